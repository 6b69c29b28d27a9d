/* lm.h - the language-modelling stages: pretrain (next-token loss on documents) and
 * sft (loss on the assistant's tokens: completions of prompt/completion pairs, assistant
 * turns of chats; optionally packed several to a row; see stages/data/corpus.h).
 *
 * One update = batch_size rows drawn from the corpus sampler, run as
 * batch_size / micro_batch_size micro-batches whose gradients add up; the loss is the
 * mean over every scored token of the whole batch, so accumulation does not change
 * it.  The trainer state (step, data position, optimizer moments, weights) saves to a
 * directory and loads back so that a resumed run is bit-identical to an uninterrupted
 * one on the CPU. */
#ifndef R1_STAGES_LM_H
#define R1_STAGES_LM_H

#include <stdint.h>

#include "core/model.h"
#include "core/dist.h"
#include "core/optim.h"
#include "stages/data/corpus.h"

struct r1_lm_config {
    int64_t steps;  /* updates; 0: derived from epochs */
    int64_t epochs; /* used when steps is 0: ceil(rows of `epochs` epochs / batch_size)
                     * updates (packed rows counted exactly, r1_sampler_rows) */
    int batch_size, micro_batch_size, seq_len;
    uint64_t seed;
    struct r1_optim_config optim;
    struct r1_corpus_spec data; /* sft: data.kind R1_CORPUS_PAIRS, and optionally
                                 * data.chat_template, prompt_template, messages_field, pack */
    /* data parallel (NULL or world 1: one process): every rank draws the same batch, rank r
     * runs micro-batches r, r + world, ..., and the ranks' gradients and losses are summed
     * before the identical update on every rank */
    struct r1_dist *dist;
};

struct r1_lm_metrics {
    int64_t step;     /* updates done after this step */
    double loss;      /* mean per scored token */
    double grad_norm; /* before clipping */
    float lr;
    int64_t tokens;   /* scored tokens in the step */
    int64_t epoch;
};

struct r1_lm_stage;

/* The model is borrowed; the stage owns its optimizer, corpus and buffers. */
int r1_lm_stage_create(struct r1_lm_stage **out, struct r1_model *m,
                       const struct r1_tokenizer *tok, const struct r1_lm_config *cfg);
/* The stage's optimizer (borrowed). */
struct r1_optim *r1_lm_stage_optim(struct r1_lm_stage *s);
void r1_lm_stage_free(struct r1_lm_stage *s);
int r1_lm_stage_step(struct r1_lm_stage *s, struct r1_lm_metrics *out);
int64_t r1_lm_stage_steps_done(const struct r1_lm_stage *s);
int64_t r1_lm_stage_steps_total(const struct r1_lm_stage *s);
const char *r1_lm_stage_data_sha256(const struct r1_lm_stage *s);
/* dir/ gets the Hugging Face files (config.json, model.safetensors),
 * optimizer.safetensors and trainer_state.json. */
int r1_lm_stage_save(const struct r1_lm_stage *s, const char *dir);
/* Restores weights, optimizer, step and data position saved by r1_lm_stage_save. */
int r1_lm_stage_load(struct r1_lm_stage *s, const char *dir);

#endif
