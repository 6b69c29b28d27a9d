/* stage.h - the interface every stage kind implements; stages/pipeline.c treats all
 * stages alike through it and knows nothing about what a stage computes.
 *
 * Life of a stage: validate (kind-specific recipe checks, before any work starts) →
 * init (given the model it starts from) → optionally load (continue from a checkpoint
 * dir) → step until finished, with save every save_every steps and at the end.  A
 * stage's state (weights, optimizer, data position, RNG counters, progress) is exactly
 * what save writes and load reads back: nothing else survives a restart. */
#ifndef R1_STAGES_STAGE_H
#define R1_STAGES_STAGE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "core/backend.h"
#include "core/dist.h"
#include "core/ledger.h"
#include "core/model.h"
#include "core/recipe.h"
#include "core/tokenizer.h"

/* What the pipeline hands a stage; all borrowed for the stage's life. */
struct r1_stage_env {
    struct r1_backend *be;
    const struct r1_recipe *recipe;
    int index;                      /* this stage in recipe->stages */
    struct r1_model *model;         /* the model the stage trains (owned by the pipeline) */
    const struct r1_tokenizer *tok;
    const char *run_dir;
    /* data.stage: the dataset file (R1_STAGE_DATASET_FILE) of that earlier stage's final
     * checkpoint; NULL when the stage reads no stage's data */
    const char *data_path;
    /* Loads another model (rejection.source, align.reward_model) on the run's backend;
     * the caller frees both.  ctx is the pipeline's. */
    int (*open_model)(void *ctx, const struct r1_model_source *src, struct r1_model **m,
                      struct r1_tokenizer **tok);
    void *ctx;
    /* The built-in chat template (core/template.h) the stage renders with: model.chat_template
     * resolved against the model's own template (r1_chat_template_resolve); NULL: none. */
    const char *chat_template;
    /* The job's processes (NULL: one).  Stages split their work over the ranks (micro-batches
     * of every update, groups of rollouts, prompts of rejection sampling and evaluation)
     * and sum or gather what the ranks computed, so every rank holds the same state.  Every rank calls init, load, step and evaluate alike; only rank 0 calls
     * save. */
    struct r1_dist *dist;
};

/* The file a data-producing stage (rejection_sft) saves in its checkpoints. */
#define R1_STAGE_DATASET_FILE "dataset.jsonl"

#define R1_STAGE_MAX_METRICS 64

/* One step's numbers: the pipeline writes them to metrics.jsonl as they are. */
struct r1_stage_metrics {
    int64_t step; /* updates done after this step */
    int n;
    const char *keys[R1_STAGE_MAX_METRICS];
    double values[R1_STAGE_MAX_METRICS];
    /* JSONL lines (each with a "step") the pipeline appends to DIR/samples/<stage>.jsonl,
     * or NULL; borrowed until the next call into the stage */
    const char *samples;
};

struct r1_stage_ops {
    const char *kind;
    /* Checks this kind's recipe keys beyond the schema; R1_EINVAL naming the file. */
    int (*validate)(const struct r1_recipe *r, int index);
    int (*init)(void **state, const struct r1_stage_env *env);
    int (*step)(void *state, struct r1_stage_metrics *out);
    /* Writes the stage's files into dir; *files (static or state-owned) lists their names. */
    int (*save)(void *state, const char *dir, const char *const **files, int *n_files);
    int (*load)(void *state, const char *dir);
    bool (*finished)(const void *state);
    /* Steps done and in total. */
    void (*progress)(const void *state, int64_t *done, int64_t *total);
    /* One line for the ledger commit, e.g. "sft: step 40 of 100, loss 1.234". */
    void (*summary)(const void *state, char *buf, size_t cap);
    /* Optional (NULL: none).  Measures the current model on held-out data without
     * changing any state; out->n = 0 when the stage has nothing to evaluate.  The
     * pipeline calls it before the first step, every eval_every steps and at the end,
     * and writes the numbers (keys like "eval/accuracy") as a metrics line. */
    int (*evaluate)(void *state, struct r1_stage_metrics *out);
    /* Datasets read, for the R1-Data trailers (pointer into state). */
    const struct r1_data_hash *(*data)(const void *state, int *n);
    void (*free)(void *state);
    /* Optional (NULL: none).  The optimizer the stage trains with, or NULL: the pipeline
     * counts its state in the memory plan, and under ZeRO-1 (optimizer.zero) has every rank
     * but 0 write its shard (r1_optim_shard_file) into the checkpoint, where save writes
     * rank 0's as optimizer.safetensors. */
    struct r1_optim *(*optim)(void *state);
};

/* ---- helpers for save/load of training stages ---------------------------------- */
struct r1_optim;
/* The trained model (config.json, model.safetensors, the tokenizer's files) and its
 * optimizer state (optimizer.safetensors) into dir, and back. */
int r1_stage_save_weights(const struct r1_model *m, const struct r1_tokenizer *tok,
                          const struct r1_optim *opt, const char *dir);
int r1_stage_load_weights(struct r1_model *m, struct r1_optim *opt, const char *dir);
/* Writes the JSON object o to dir/trainer_state.json atomically and releases o
 * (o may be NULL after a failed json_pack: R1_ENOMEM). */
struct json_t;
int r1_stage_write_state(const char *dir, struct json_t *o);

/* Checks the prompt data of a stage that samples (grpo, align, rejection_sft): data.path
 * (JSONL) or data.generator (a valid spec), and data.template (a name or text with
 * {prompt}).  R1_EINVAL naming the recipe file and the stage. */
int r1_stage_check_prompt_data(const struct r1_recipe *r, int index);

/* The stage table: the ops of a kind, or NULL when this r1 has no trainer for it. */
const struct r1_stage_ops *r1_stage_ops_find(enum r1_stage_kind kind);

#endif
