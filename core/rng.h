/* rng.h - counter-based random numbers (Philox4x32-10).
 *
 * A stream's whole state is (seed, stream, counter): saving and restoring those
 * three numbers reproduces the sequence exactly, and any element of any stream
 * can be computed directly (no hidden buffer).  Each purpose has its own stream
 * id, so consuming numbers for one purpose never shifts another:
 *   R1_STREAM_INIT + i     weights of parameter tensor i
 *   R1_STREAM_DATA         data order / shuffling
 *   R1_STREAM_SAMPLE + s   token sampling of sequence s (independent of batch
 *                          composition)
 * The counter counts 32-bit outputs drawn; block = counter / 4, lane = counter % 4. */
#ifndef R1_RNG_H
#define R1_RNG_H

#include <stdint.h>

#define R1_STREAM_INIT   0x0000000100000000ull
#define R1_STREAM_DATA   0x0000000200000000ull
#define R1_STREAM_SAMPLE 0x0000000300000000ull
#define R1_STREAM_USER   0x0000000400000000ull

struct r1_rng {
    uint64_t seed;
    uint64_t stream;
    uint64_t counter;
};

/* One Philox4x32-10 block: key = seed, counter words = (ctr lo, ctr hi, stream lo, stream hi). */
void r1_philox4x32(uint32_t out[4], uint64_t seed, uint64_t stream, uint64_t block);

struct r1_rng r1_rng_make(uint64_t seed, uint64_t stream);
/* SplitMix64's output function: a bijective mix of x, for deriving seeds of sub-streams
 * (e.g. one generation seed per step) from a stage seed. */
uint64_t r1_rng_mix64(uint64_t x);
uint32_t r1_rng_u32(struct r1_rng *r);
uint64_t r1_rng_u64(struct r1_rng *r);
/* Uniform in [0, 1) with 24 bits (float) / 53 bits (double). */
float r1_rng_uniform(struct r1_rng *r);
double r1_rng_uniform_double(struct r1_rng *r);
/* Standard normal (Box-Muller, consumes two 32-bit outputs... see rng.c). */
float r1_rng_normal(struct r1_rng *r);
/* Uniform integer in [0, n), n > 0, without modulo bias. */
uint64_t r1_rng_below(struct r1_rng *r, uint64_t n);
/* Fisher-Yates shuffle of idx[0..n). */
void r1_rng_shuffle(struct r1_rng *r, int64_t *idx, int64_t n);

/* Stateless: the i-th standard normal of (seed, stream): depends only on its arguments. */
float r1_rng_normal_at(uint64_t seed, uint64_t stream, uint64_t i);

#endif
