/* sample.h - picking the next token from a row of logits (host memory).
 *
 * Order of processing, as in Hugging Face / vLLM: temperature, then top-k,
 * then top-p (nucleus), then min-p, then renormalise and draw with one uniform
 * u in [0,1) by inverse CDF over tokens sorted by probability (ties by id).
 * temperature <= 0 means greedy (argmax, lowest id on ties).
 * The returned log-probability is that of the chosen token under the
 * distribution actually sampled from (after temperature and filters); for
 * greedy it is the log-softmax of the raw logits. */
#ifndef R1_SAMPLE_H
#define R1_SAMPLE_H

#include <stdint.h>

struct r1_sampling {
    float temperature; /* <= 0: greedy */
    int top_k;         /* <= 0: off */
    float top_p;       /* >= 1: off */
    float min_p;       /* <= 0: off */
};

/* Scratch for V tokens, allocated once per generator (no allocation per token). */
struct r1_sample_scratch {
    int V;
    float *prob;  /* (V) */
    int32_t *idx; /* (V) */
};

int r1_sample_scratch_init(struct r1_sample_scratch *s, int V);
void r1_sample_scratch_release(struct r1_sample_scratch *s);

/* Validates settings: returns 0 or R1_EINVAL with a message naming the field. */
int r1_sampling_check(const struct r1_sampling *s);

/* logits (V).  Returns the token id; *logprob (may be NULL) as described above. */
int32_t r1_sample_token(const float *logits, int V, const struct r1_sampling *s, float u,
                        float *logprob, struct r1_sample_scratch *scr);

/* The probabilities r1_sample_token draws from, written to probs (V) (for tests). */
void r1_sample_probs(const float *logits, int V, const struct r1_sampling *s, float *probs,
                     struct r1_sample_scratch *scr);

#endif
