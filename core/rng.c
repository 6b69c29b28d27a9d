/* rng.c - Philox4x32-10 counter-based random numbers (see rng.h).
 *
 * Philox4x32-10 as published by Salmon et al. (SC'11) and shipped in Random123:
 * multipliers 0xD2511F53 / 0xCD9E8D57, Weyl key increments 0x9E3779B9 /
 * 0xBB67AE85, 10 rounds, key bumped between rounds.  Layout used by r1:
 *   key     = (seed lo32, seed hi32)
 *   counter = (block lo32, block hi32, stream lo32, stream hi32)
 * so Random123's ctr[0..3], key[0..1] map onto (block, stream, seed) as
 * block = ctr[1]:ctr[0], stream = ctr[3]:ctr[2], seed = key[1]:key[0].
 *
 * Consumption rules (they are part of the reproducibility contract):
 *   r1_rng_u32      1 output: lane counter % 4 of block counter / 4.
 *   r1_rng_u64      2 outputs: the first is the low word, the second the high word.
 *   uniform         1 output:  (u32 >> 8) * 2^-24, in [0, 1).
 *   uniform_double  2 outputs: (u64 >> 11) * 2^-53, in [0, 1).
 *   normal          2 outputs a, b (in that order), Box-Muller cosine branch:
 *                   u1 = ((a >> 8) + 0.5) * 2^-24 in (0, 1), u2 = (b >> 8) * 2^-24,
 *                   z = sqrt(-2 ln u1) * cos(2 pi u2).  The sine branch is not
 *                   cached, so the state stays (seed, stream, counter).  |z| <= 5.9.
 *   below(n)        n <= 2^32: 1 output per attempt (Lemire's multiply-shift with
 *                   rejection); n > 2^32: 2 outputs per attempt (threshold rejection).
 *   shuffle         Fisher-Yates from the top: for i = n-1 .. 1, j = below(i + 1).
 * The normal is computed in float with libm; different libms may differ in the
 * last ulp, the integer outputs are bit-exact everywhere. */
#include "core/rng.h"

#include <math.h>

#define PHILOX_M0 0xD2511F53u
#define PHILOX_M1 0xCD9E8D57u
#define PHILOX_W0 0x9E3779B9u
#define PHILOX_W1 0xBB67AE85u

static inline void philox_round(uint32_t c[4], uint32_t k0, uint32_t k1)
{
    uint64_t p0 = (uint64_t)PHILOX_M0 * c[0];
    uint64_t p1 = (uint64_t)PHILOX_M1 * c[2];
    uint32_t hi0 = (uint32_t)(p0 >> 32), lo0 = (uint32_t)p0;
    uint32_t hi1 = (uint32_t)(p1 >> 32), lo1 = (uint32_t)p1;
    uint32_t n0 = hi1 ^ c[1] ^ k0;
    uint32_t n2 = hi0 ^ c[3] ^ k1;
    c[0] = n0;
    c[1] = lo1;
    c[2] = n2;
    c[3] = lo0;
}

void r1_philox4x32(uint32_t out[4], uint64_t seed, uint64_t stream, uint64_t block)
{
    uint32_t c[4] = {(uint32_t)block, (uint32_t)(block >> 32), (uint32_t)stream,
                     (uint32_t)(stream >> 32)};
    uint32_t k0 = (uint32_t)seed, k1 = (uint32_t)(seed >> 32);
    for (int round = 0; round < 10; round++) {
        if (round > 0) {
            k0 += PHILOX_W0;
            k1 += PHILOX_W1;
        }
        philox_round(c, k0, k1);
    }
    out[0] = c[0];
    out[1] = c[1];
    out[2] = c[2];
    out[3] = c[3];
}

struct r1_rng r1_rng_make(uint64_t seed, uint64_t stream)
{
    struct r1_rng r = {seed, stream, 0};
    return r;
}

uint32_t r1_rng_u32(struct r1_rng *r)
{
    uint32_t b[4];
    r1_philox4x32(b, r->seed, r->stream, r->counter >> 2);
    uint32_t x = b[r->counter & 3];
    r->counter++;
    return x;
}

/* Two consecutive outputs; one Philox block when both fall in the same block. */
static void rng_pair(struct r1_rng *r, uint32_t *a, uint32_t *b)
{
    unsigned lane = (unsigned)(r->counter & 3);
    if (lane < 3) {
        uint32_t blk[4];
        r1_philox4x32(blk, r->seed, r->stream, r->counter >> 2);
        *a = blk[lane];
        *b = blk[lane + 1];
        r->counter += 2;
    } else {
        *a = r1_rng_u32(r);
        *b = r1_rng_u32(r);
    }
}

uint64_t r1_rng_u64(struct r1_rng *r)
{
    uint32_t lo, hi;
    rng_pair(r, &lo, &hi);
    return (uint64_t)lo | ((uint64_t)hi << 32);
}

float r1_rng_uniform(struct r1_rng *r)
{
    return (float)(r1_rng_u32(r) >> 8) * 0x1.0p-24f;
}

double r1_rng_uniform_double(struct r1_rng *r)
{
    return (double)(r1_rng_u64(r) >> 11) * 0x1.0p-53;
}

static float normal_from(uint32_t a, uint32_t b)
{
    float u1 = ((float)(a >> 8) + 0.5f) * 0x1.0p-24f;
    float u2 = (float)(b >> 8) * 0x1.0p-24f;
    float radius = sqrtf(-2.0f * logf(u1));
    return radius * cosf(6.28318530717958647692f * u2);
}

float r1_rng_normal(struct r1_rng *r)
{
    uint32_t a, b;
    rng_pair(r, &a, &b);
    return normal_from(a, b);
}

float r1_rng_normal_at(uint64_t seed, uint64_t stream, uint64_t i)
{
    /* Outputs 2i and 2i+1 always share block i / 2: lanes 0,1 (i even) or 2,3 (i odd). */
    uint32_t blk[4];
    r1_philox4x32(blk, seed, stream, i >> 1);
    unsigned lane = (unsigned)(i & 1) * 2;
    return normal_from(blk[lane], blk[lane + 1]);
}

uint64_t r1_rng_below(struct r1_rng *r, uint64_t n)
{
    if (n <= 1)
        return 0; /* n == 1 has one answer; n == 0 is a caller error, answered with 0 */
    if (n <= UINT32_MAX) {
        uint32_t n32 = (uint32_t)n;
        uint64_t m = (uint64_t)r1_rng_u32(r) * n32;
        uint32_t low = (uint32_t)m;
        if (low < n32) {
            uint32_t threshold = (uint32_t)(-n32) % n32; /* 2^32 mod n */
            while (low < threshold) {
                m = (uint64_t)r1_rng_u32(r) * n32;
                low = (uint32_t)m;
            }
        }
        return m >> 32;
    }
    uint64_t threshold = (uint64_t)(-n) % n; /* 2^64 mod n */
    uint64_t x = r1_rng_u64(r);
    while (x < threshold)
        x = r1_rng_u64(r);
    return x % n;
}

void r1_rng_shuffle(struct r1_rng *r, int64_t *idx, int64_t n)
{
    for (int64_t i = n - 1; i > 0; i--) {
        int64_t j = (int64_t)r1_rng_below(r, (uint64_t)i + 1);
        int64_t t = idx[i];
        idx[i] = idx[j];
        idx[j] = t;
    }
}

uint64_t r1_rng_mix64(uint64_t x)
{
    x += 0x9E3779B97F4A7C15ull;
    x = (x ^ (x >> 30)) * 0xBF58476D1CE4E5B9ull;
    x = (x ^ (x >> 27)) * 0x94D049BB133111EBull;
    return x ^ (x >> 31);
}
