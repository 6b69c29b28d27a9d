/* generate.h - batched generation with a KV cache and continuous batching.
 *
 * A generator owns a KV cache of `slots` sequences.  r1_generate() takes a list
 * of requests (prompts); each active slot decodes one token per step, prompts
 * are prefilled in chunks within a per-step token budget, and a slot whose
 * sequence finishes is refilled at once with the next waiting prompt.
 *
 * Sampling of request i uses its own RNG stream (seed, R1_STREAM_SAMPLE +
 * req.stream) and the token index as counter, so a sequence's sample does not
 * depend on which other sequences share the batch or on the slot count.
 * The draw runs on the backend when it has the op sample (the logits then never
 * leave it; the same tokens as the host's r1_sample_token up to rounding at the
 * boundary between two tokens, see core/backend.h), else on the host.
 * Tokens are drawn among the ids the tokenizer has: where the model's vocabulary is
 * larger (padded, or a scratch preset with a smaller tokenizer) the rest are never
 * sampled, as if their logits were -inf.
 * Finish reasons: STOP (a stop token or stop string was produced; it is kept
 * in the output) or LENGTH (max_new_tokens reached). */
#ifndef R1_GENERATE_H
#define R1_GENERATE_H

#include <stdint.h>

#include "core/model.h"
#include "core/sample.h"
#include "core/tokenizer.h"

#define R1_GEN_MAX_STOP_LEN 128

enum r1_finish { R1_FINISH_STOP = 0, R1_FINISH_LENGTH };

struct r1_gen_config {
    struct r1_sampling sampling;
    int max_new_tokens;
    uint64_t seed;
    const int32_t *stop_ids; /* e.g. the end-of-text id */
    int n_stop_ids;
    const char *const *stop_strings; /* each at most R1_GEN_MAX_STOP_LEN bytes */
    int n_stop_strings;
    /* Precision of the weight matrices generation reads (q/k/v/o, gate/up/down, lm_head):
     * R1_F32 (0, the default) uses the model's own; R1_BF16 uses bf16 copies the
     * generator's cache holds, converted (round to nearest even) from the model's current
     * weights at the start of every r1_generate call, so weights a stage changed between
     * calls are seen.  bf16 halves the bytes a decode step streams (batch-1 decoding is
     * bound by them) and lets a GPU run the matmuls on tensor cores: a matmul's input is
     * rounded to bf16 too, as the training forward in precision bf16 rounds it, and sums
     * and the other activations stay f32; a row's logits still do not depend on the
     * other sequences in the step or on the slot count.  Logits differ from f32 by about
     * the bf16 rounding of weights and inputs (relative 2^-9 each). */
    enum r1_dtype weights;
};

struct r1_gen_request {
    const int32_t *prompt;
    int prompt_len; /* >= 1 */
    uint64_t stream; /* RNG stream of this sequence (e.g. prompt index · n + sample index) */
};

/* Output buffers are the caller's: tokens and logprobs of capacity max_new_tokens. */
struct r1_gen_result {
    int32_t *tokens;
    float *logprobs; /* log-prob of each token under the sampling distribution */
    int n;
    enum r1_finish finish;
};

/* Called after each new token (and once more with token -1 when the request finishes). */
typedef void (*r1_gen_token_fn)(void *user, int req, int32_t token);

struct r1_generator;

/* step_tokens: token budget per model step (>= slots); prompts longer than the
 * remaining budget are prefilled over several steps. */
int r1_generator_create(struct r1_generator **out, struct r1_model *m,
                        const struct r1_tokenizer *tok, int slots, int max_len, int step_tokens);
void r1_generator_free(struct r1_generator *g);

int r1_generate(struct r1_generator *g, const struct r1_gen_config *cfg,
                const struct r1_gen_request *reqs, int n_reqs, struct r1_gen_result *res,
                r1_gen_token_fn on_token, void *user);

/* on: decode-only steps replay recorded graphs (the default where the backend has them:
 * CUDA graphs; the same tokens); 0: every step op by op.  R1_EINVAL for on without. */
int r1_generator_set_graphs(struct r1_generator *g, int on);

/* Counters of the last r1_generate call. */
struct r1_gen_stats {
    int64_t prefill_tokens, decode_tokens, steps;
};
struct r1_gen_stats r1_generator_stats(const struct r1_generator *g);

#endif
