/* recipe.h - YAML recipes: parse (libyaml), `extends`, `--set`, validate, canonical dump.
 *
 * A recipe names a run, a seed, a model source and an ordered list of stages.
 * r1_recipe_load() reads the file (and the files it extends), applies --set
 * overrides, validates everything against the schema table and fills every
 * default, so later code reads typed fields only.  Every problem is collected
 * as one line "file:line:col: message" (1-based, as editors show; "--set KEY:
 * message" for command-line overrides) in a struct r1_recipe_diag.
 *
 * Paths (model.init, model.tokenizer, data.path, data.eval_path, extends) are
 * resolved relative to the directory of the file that names them (relative to
 * the working directory for --set) and stored absolute, so the canonical dump
 * (r1_recipe_write_yaml, the future recipe.lock.yaml) parses back to the same
 * recipe wherever it is written. */
#ifndef R1_RECIPE_H
#define R1_RECIPE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#include "core/optim.h"

enum r1_stage_kind {
    R1_STAGE_PRETRAIN = 0,
    R1_STAGE_SFT,
    R1_STAGE_GRPO,
    R1_STAGE_REJECTION_SFT,
    R1_STAGE_REWARD_MODEL,
    R1_STAGE_ALIGN,
    R1_STAGE_N_KINDS
};

enum r1_recipe_backend { R1_RECIPE_BACKEND_AUTO = 0, R1_RECIPE_BACKEND_CPU, R1_RECIPE_BACKEND_CUDA };
/* a stage's matmul precision: the values of enum r1_dtype R1_F32 and R1_BF16 */
enum r1_precision { R1_PRECISION_F32 = 0, R1_PRECISION_BF16 = 1 };
enum r1_data_format { R1_DATA_TEXT = 0, R1_DATA_JSONL };
enum r1_grpo_loss { R1_GRPO_LOSS_GRPO = 0, R1_GRPO_LOSS_BNPO, R1_GRPO_LOSS_DR_GRPO, R1_GRPO_LOSS_DAPO };
enum r1_grpo_scale { R1_GRPO_SCALE_GROUP = 0, R1_GRPO_SCALE_BATCH, R1_GRPO_SCALE_NONE };

/* Where a model's weights come from (model.init, stages[].init). */
enum r1_source_kind {
    R1_SOURCE_SCRATCH = 0, /* "scratch:<preset>": fresh weights of a core/model.h preset */
    R1_SOURCE_HFDIR,       /* a Hugging Face directory (config.json, *.safetensors) */
    R1_SOURCE_GGUF,        /* a .gguf file */
    R1_SOURCE_STAGE,       /* the final checkpoint of an earlier stage */
};

struct r1_model_source {
    char *spec;   /* resolved: "scratch:tiny", an absolute path, or a stage name */
    enum r1_source_kind kind;
    char *preset;              /* R1_SOURCE_SCRATCH: the preset name; else NULL */
    int stage;                 /* R1_SOURCE_STAGE: index of the earlier stage; else -1 */
};

/* Where the accuracy-style rewards find the final answer in a completion (text inside
 * <think>…</think> never counts). */
enum r1_answer_from {
    R1_ANSWER_AUTO = 0, /* the first <answer> block (its \boxed{} if it holds one), else the last \boxed{} */
    R1_ANSWER_BOXED,    /* the last \boxed{…} */
    R1_ANSWER_TAG,      /* the first <answer>…</answer> block */
    R1_ANSWER_TAG_LAST, /* the last <answer>…</answer> block */
};

enum r1_judge_verdict { R1_VERDICT_PROBABILITY = 0, R1_VERDICT_BINARY };

struct r1_reward_cfg {
    char *name;
    float weight;
    enum r1_answer_from answer; /* accuracy, length_cosine, judge (the prediction it reads) */
    char *language;             /* language: target language code ("en", "zh", ...) */
    int64_t ngram;              /* repetition: n-gram size */
    float max_penalty;          /* repetition: reward of a fully repetitive text (<= 0) */
    /* judge: the judge model (an earlier stage, a HF dir or a .gguf), its prompt template
     * (NULL: R1_JUDGE_TEMPLATE), and the reward: P(yes), or 1 when P(yes) >= threshold */
    struct r1_model_source judge;
    char *judge_template;
    enum r1_judge_verdict verdict;
    float threshold;
};

struct r1_data_cfg {
    char *path;       /* absolute; NULL when the data come from a stage or a generator */
    char *stage;      /* name of an earlier stage whose produced data this stage reads */
    int stage_index;  /* its index, -1 when stage is NULL */
    char *generator;
    enum r1_data_format format;
    char *text_field, *prompt_field, *completion_field, *answer_field;
    char *eval_path;  /* absolute, or NULL */
    char *template_;  /* prompt template: a name (none, r1-zero) or text with {prompt}; NULL: none */
    int64_t size;      /* generator: training examples */
    int64_t eval_size; /* generator: held-out examples */
    bool pack;         /* sft: several examples per seq_len row (own attention, positions) */
    char *messages_field; /* sft: JSONL field with a chat ([{role, content}, ...]) */
};

struct r1_grpo_cfg {
    int64_t prompts_per_step, group_size;
    float temperature, top_p;
    int64_t max_completion_len, iterations, minibatches;
    float epsilon_low, epsilon_high, beta;
    enum r1_grpo_loss loss_type;
    enum r1_grpo_scale scale_rewards;
    bool mask_truncated;
    int64_t ref_reset_every; /* 0: never */
    float entropy_coef;      /* bonus on the policy's token entropy (0: none) */
    bool dynamic_sampling;   /* drop groups whose rewards are all equal, draw more prompts */
    int64_t max_draws;       /* dynamic sampling: prompt batches drawn per step at most */
    int64_t overlong_buffer; /* DAPO soft overlong penalty: tokens before the limit (0: off) */
    float overlong_penalty;  /* its largest penalty (at the limit) */
    int64_t samples_every, samples_count; /* completions logged to samples/<stage>.jsonl */
    int64_t eval_samples;    /* completions per held-out prompt (pass@1 averaged over them) */
    float eval_temperature;
    char *accuracy_reward;   /* the reward whose value >= 1 counts as a correct answer */
    struct r1_reward_cfg *rewards;
    int n_rewards;
};

enum r1_rm_scope { R1_RM_SCOPE_SUMMARY = 0, R1_RM_SCOPE_FULL };

struct r1_rejection_cfg {
    struct r1_model_source source; /* the model that samples (default: the previous stage) */
    int64_t samples_per_prompt, max_completion_len;
    float temperature, top_p;
    int64_t keep_per_prompt;
    int64_t prompts_per_step; /* prompts generated between two progress checkpoints */
    int64_t max_prompts;      /* 0: the whole prompt set */
    struct r1_reward_cfg *rewards; /* scored and summed like grpo rewards */
    int n_rewards;
    float min_reward;      /* the weighted sum a completion needs */
    bool require_format;   /* <think>…</think> then an answer (the format reward = 1) */
    char *language;        /* language of the whole completion, for min_language */
    float min_language;    /* fraction of the text in that language at least (0: off) */
    int64_t min_tokens, max_tokens; /* completion length bounds (max 0: max_completion_len) */
    bool no_code_blocks;   /* reject completions with ``` fenced blocks */
    int64_t max_paragraph_chars; /* reject a paragraph longer than this (0: off) */
    float dedup_threshold; /* near-duplicate similarity within a prompt (0: off) */
    char *mix_path;        /* non-reasoning JSONL mixed in, or NULL */
    float mix_ratio;       /* its share of the final dataset */
    char *mix_prompt_field, *mix_response_field;
};

enum r1_rm_mode { R1_RM_PAIRWISE = 0, R1_RM_POINTWISE };

struct r1_reward_model_cfg {
    enum r1_rm_mode mode;
    float margin;
    char *chosen_field, *rejected_field;
    char *response_field, *label_field; /* pointwise */
};

struct r1_align_cfg {
    struct r1_model_source reward_model; /* default: the latest earlier reward_model stage */
    enum r1_rm_scope rm_scope;
    int64_t rm_start_step;  /* the RM scores from this step on (0: from the start) */
    float rm_weight;
    /* the pointwise safety reward model (a reward_model stage in mode pointwise, or a dir
     * saved by one; spec NULL: none): every completion gets safety_weight × P(safe), read
     * from the whole completion, chain of thought included */
    struct r1_model_source safety_model;
    float safety_weight;
    char *general_path;      /* prompts without a reference answer (JSONL), or NULL */
    char *general_generator; /* or a generator spec */
    int64_t general_size;
};

struct r1_stage_cfg {
    char *name;
    enum r1_stage_kind kind;
    struct r1_model_source init; /* default: the previous stage (model.init for the first) */
    int64_t steps, epochs; /* exactly one is > 0 */
    int64_t batch_size, micro_batch_size, seq_len;
    bool recompute;    /* recompute activations in the backward (r1_model_set_recompute) */
    enum r1_precision precision; /* the stage's models and generation (r1_model_set_precision) */
    int64_t save_every, log_every, eval_every; /* eval_every 0: never */
    /* sft, rejection_sft: completions per held-out prompt and their temperature (grpo and
     * align have grpo.eval_samples / eval_temperature) */
    int64_t eval_samples;
    float eval_temperature;
    int64_t gen_slots; /* sequences generated together (the generators' KV-cache slots) */
    struct r1_optim_config optim; /* total_steps is left 0: the stage knows its length */
    struct r1_data_cfg data;
    struct r1_grpo_cfg grpo;           /* grpo, align */
    struct r1_rejection_cfg rejection; /* rejection_sft */
    struct r1_reward_model_cfg reward_model; /* reward_model */
    struct r1_align_cfg align;         /* align */
};

struct r1_recipe {
    char *path;     /* the file it was loaded from */
    char *extends;  /* the parent it extended (absolute), or NULL */
    char *name;
    int64_t seed;
    enum r1_recipe_backend backend;
    struct r1_model_source model_init;
    char *tokenizer;     /* "bytes", an absolute path, or NULL */
    char *chat_template; /* NULL: none */
    struct r1_stage_cfg *stages;
    int n_stages;
};

/* Every problem found by one load, in file/line order. */
struct r1_recipe_diag {
    char **msgs;
    int n, cap;
};

void r1_recipe_diag_release(struct r1_recipe_diag *d);

/* Loads, merges (extends), overrides (sets: "KEY=VALUE" strings, n_sets of them),
 * validates and resolves the recipe at path.  0 and *out (free with
 * r1_recipe_free); or R1_EINVAL with every problem in diag (when diag is not
 * NULL) and r1_err_last() naming the count, or R1_ENOMEM. */
int r1_recipe_load(struct r1_recipe **out, const char *path, const char *const *sets, int n_sets,
                   struct r1_recipe_diag *diag);
void r1_recipe_free(struct r1_recipe *r);

/* The fully resolved recipe as YAML: every key, defaults filled, schema order. */
int r1_recipe_write_yaml(const struct r1_recipe *r, FILE *f);
/* sha256 (lower-case hex) of r1_recipe_write_yaml's output. */
int r1_recipe_hash(const struct r1_recipe *r, char hex[65]);

const char *r1_stage_kind_name(enum r1_stage_kind k);

/* ---- the schema: one table drives validation, defaults, the dump and `r1 recipe keys` ---- */

enum r1_key_type {
    R1_KEY_INT = 0, /* int64_t */
    R1_KEY_FLOAT,   /* float */
    R1_KEY_BOOL,    /* bool */
    R1_KEY_STRING,  /* char * (owned) */
    R1_KEY_ENUM,    /* an enum, stored as int; value = index in choices */
    R1_KEY_MAP,     /* a nested section (choices names it) */
    R1_KEY_LIST,    /* a list of maps of section choices: pointer at offset, int count */
};

#define R1_KEY_REQUIRED 1u /* must be present */
#define R1_KEY_MIN_OPEN 2u /* min itself is not allowed */
#define R1_KEY_MAX_OPEN 4u /* max itself is not allowed */
#define R1_KEY_NODUMP 8u   /* not part of the resolved recipe (extends) */

struct r1_recipe_key {
    const char *section;   /* "" (top), "model", "stage", "optimizer", "data", "grpo", ... */
    const char *key;
    enum r1_key_type type;
    const char *def;       /* default as YAML text; NULL: none */
    double min, max;       /* INT and FLOAT */
    unsigned flags;        /* R1_KEY_* */
    const char *choices;   /* ENUM: "a|b|c"; MAP, LIST: the section it holds */
    unsigned kinds;        /* stage kinds it applies to (bit 1u << kind); 0: all */
    size_t offset;         /* into struct r1_recipe, r1_stage_cfg or r1_reward_cfg */
    size_t count_offset, item_size; /* LIST only */
    const char *help;
};

/* The table, in dump order; *n gets its length. */
const struct r1_recipe_key *r1_recipe_schema(int *n);
/* The allowed range of an INT/FLOAT key ("[1, 4096]", ">= 0", "(0, 10)") or an ENUM's
 * choices ("a|b|c") into buf; "" for other types. */
void r1_recipe_key_range(const struct r1_recipe_key *k, char *buf, size_t cap);
/* Writes the schema as a markdown table (key path, type, default, range, kinds, help). */
int r1_recipe_write_keys(FILE *f);

#endif
