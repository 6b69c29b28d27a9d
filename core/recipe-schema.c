/* recipe-schema.c - the recipe schema table, the canonical YAML dump, its hash and the
 * `r1 recipe keys` table.
 *
 * The table is the single description of a recipe: core/recipe.c validates and
 * fills defaults from it, the dump walks it in order (so the key order is stable
 * and formatting never changes the hash), and r1_recipe_write_keys prints it.
 * Optimizer rows mirror r1_optim_config_default / r1_optim_config_check. */
#include "core/recipe.h"

#include <inttypes.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/evp.h>

#include "core/err.h"

#define K(k) (1u << R1_STAGE_##k)
#define KINDS_GRPO (K(GRPO) | K(ALIGN))
#define BIG 1e15 /* "no upper bound" */

#define RCP(f) offsetof(struct r1_recipe, f)
#define STG(f) offsetof(struct r1_stage_cfg, f)
#define RWD(f) offsetof(struct r1_reward_cfg, f)

/* clang-format off */
static const struct r1_recipe_key schema[] = {
    /* section, key, type, default, min, max, flags, choices, kinds, offset, count, size, help */
    {"", "name", R1_KEY_STRING, NULL, 0, 0, R1_KEY_REQUIRED, NULL, 0, RCP(name), 0, 0,
     "run name ([A-Za-z0-9._-]+); the default run directory is runs/<name>"},
    {"", "extends", R1_KEY_STRING, NULL, 0, 0, R1_KEY_NODUMP, NULL, 0, RCP(extends), 0, 0,
     "parent recipe (path relative to this file); this file overrides it key by key"},
    {"", "seed", R1_KEY_INT, "1234", 0, 9007199254740991.0, 0, NULL, 0, RCP(seed), 0, 0,
     "seed of every RNG stream in the run"},
    {"", "backend", R1_KEY_ENUM, "auto", 0, 0, 0, "auto|cpu|cuda", 0, RCP(backend), 0, 0,
     "compute backend; auto takes CUDA when compiled in and a device is present"},
    {"", "model", R1_KEY_MAP, NULL, 0, 0, R1_KEY_REQUIRED, "model", 0, 0, 0, 0,
     "the model the first stage starts from"},
    {"model", "init", R1_KEY_STRING, NULL, 0, 0, R1_KEY_REQUIRED, NULL, 0, RCP(model_init.spec), 0, 0,
     "scratch:<preset> (" R1_MODEL_PRESETS "), a Hugging Face dir or a .gguf "
     "file (paths may start with $R1_CACHE/, the model cache, or ~/)"},
    {"model", "tokenizer", R1_KEY_STRING, NULL, 0, 0, 0, NULL, 0, RCP(tokenizer), 0, 0,
     "\"bytes\" or a tokenizer path (default: the model's own)"},
    {"model", "chat_template", R1_KEY_STRING, NULL, 0, 0, 0, NULL, 0, RCP(chat_template), 0, 0,
     "chat template: chatml, deepseek-r1, llama3, plain, r1-zero, none, or auto (default): "
     "the model's own when r1 recognises it, else none"},
    {"", "stages", R1_KEY_LIST, NULL, 0, 0, R1_KEY_REQUIRED, "stage", 0, RCP(stages),
     RCP(n_stages), sizeof(struct r1_stage_cfg), "the stages, run in order (at least one)"},

    {"stage", "name", R1_KEY_STRING, NULL, 0, 0, R1_KEY_REQUIRED, NULL, 0, STG(name), 0, 0,
     "unique stage name ([a-z0-9_-]+)"},
    {"stage", "kind", R1_KEY_ENUM, NULL, 0, 0, R1_KEY_REQUIRED,
     "pretrain|sft|grpo|rejection_sft|reward_model|align", 0, STG(kind), 0, 0, "what the stage trains"},
    {"stage", "init", R1_KEY_STRING, NULL, 0, 0, 0, NULL, 0, STG(init.spec), 0, 0,
     "a model source like model.init or an earlier stage (default: the previous stage, skipping "
     "reward_model stages; rejection_sft: the base model)"},
    {"stage", "steps", R1_KEY_INT, NULL, 1, BIG, 0, NULL, 0, STG(steps), 0, 0,
     "optimizer updates (give steps or epochs)"},
    {"stage", "epochs", R1_KEY_INT, NULL, 1, 100000, 0, NULL, 0, STG(epochs), 0, 0,
     "passes over the data (give steps or epochs)"},
    {"stage", "batch_size", R1_KEY_INT, "8", 1, 1048576, 0, NULL, 0, STG(batch_size), 0, 0,
     "sequences per optimizer update"},
    {"stage", "micro_batch_size", R1_KEY_INT, "0", 0, 1048576, 0, NULL, 0, STG(micro_batch_size),
     0, 0, "sequences per forward/backward; must divide batch_size (grpo, align: the "
     "P·G/minibatches completions of an update) (0: batch_size)"},
    {"stage", "seq_len", R1_KEY_INT, "512", 1, 1048576, 0, NULL, 0, STG(seq_len), 0, 0,
     "tokens per training sequence"},
    {"stage", "recompute", R1_KEY_BOOL, "false", 0, 0, 0, NULL, 0, STG(recompute), 0, 0,
     "keep only each layer's input in the forward and recompute the rest in the backward: "
     "activation memory ~1/layers for one more forward per step (same results, bit for bit)"},
    {"stage", "precision", R1_KEY_ENUM, "f32", 0, 0, 0, "f32|bf16", 0, STG(precision), 0, 0,
     "matmul precision of the stage's models and its sampling: bf16 rounds every matmul's "
     "operands to bf16 and sums in f32 (mixed precision, as autocast; weights, optimizer and "
     "checkpoints stay f32); tensor cores on a GPU, slower on the CPU"},
    {"stage", "save_every", R1_KEY_INT, "100", 1, BIG, 0, NULL, 0, STG(save_every), 0, 0,
     "checkpoint every N steps (and at the end)"},
    {"stage", "log_every", R1_KEY_INT, "10", 1, BIG, 0, NULL, 0, STG(log_every), 0, 0,
     "metrics line every N steps"},
    {"stage", "eval_every", R1_KEY_INT, "0", 0, BIG, 0, NULL, 0, STG(eval_every), 0, 0,
     "evaluate on data.eval_path every N steps (0: before step 1 and at the end only)"},
    {"stage", "gen_slots", R1_KEY_INT, "64", 1, 4096, 0, NULL,
     K(SFT) | K(REJECTION_SFT) | KINDS_GRPO, STG(gen_slots), 0, 0,
     "sequences generated together (KV-cache slots) in rollouts, rejection sampling and "
     "evaluation: more keep a GPU busier and hold more memory; samples do not depend on it"},
    {"stage", "eval_samples", R1_KEY_INT, "1", 1, 4096, 0, NULL, K(SFT) | K(REJECTION_SFT),
     STG(eval_samples), 0, 0,
     "completions per held-out prompt; eval/accuracy is pass@1 over them (grpo: grpo.eval_samples)"},
    {"stage", "eval_temperature", R1_KEY_FLOAT, "0", 0, 10, 0, NULL, K(SFT) | K(REJECTION_SFT),
     STG(eval_temperature), 0, 0, "sampling temperature of evaluation (0: greedy)"},
    {"stage", "optimizer", R1_KEY_MAP, NULL, 0, 0, 0, "optimizer", 0, 0, 0, 0,
     "AdamW and learning-rate schedule"},
    {"stage", "data", R1_KEY_MAP, NULL, 0, 0, R1_KEY_REQUIRED, "data", 0, 0, 0, 0,
     "what the stage reads (exactly one of path, stage, generator)"},
    {"stage", "grpo", R1_KEY_MAP, NULL, 0, 0, 0, "grpo", KINDS_GRPO, 0, 0, 0,
     "group relative policy optimisation"},
    {"stage", "rejection", R1_KEY_MAP, NULL, 0, 0, 0, "rejection", K(REJECTION_SFT), 0, 0, 0,
     "rejection sampling before fine-tuning"},
    {"stage", "reward_model", R1_KEY_MAP, NULL, 0, 0, 0, "reward_model", K(REWARD_MODEL), 0, 0, 0,
     "pairwise reward model training"},
    {"stage", "align", R1_KEY_MAP, NULL, 0, 0, 0, "align", K(ALIGN), 0, 0, 0,
     "the reward model and general prompts of alignment RL"},

    {"optimizer", "lr", R1_KEY_FLOAT, "0.0003", 0, 10, R1_KEY_MIN_OPEN | R1_KEY_MAX_OPEN, NULL, 0,
     STG(optim.lr), 0, 0, "peak learning rate"},
    {"optimizer", "min_lr", R1_KEY_FLOAT, "0", 0, 10, R1_KEY_MAX_OPEN, NULL, 0, STG(optim.min_lr),
     0, 0, "final learning rate of cosine/linear decay (<= lr)"},
    {"optimizer", "beta1", R1_KEY_FLOAT, "0.9", 0, 1, R1_KEY_MAX_OPEN, NULL, 0, STG(optim.beta1),
     0, 0, "AdamW first-moment decay"},
    {"optimizer", "beta2", R1_KEY_FLOAT, "0.95", 0, 1, R1_KEY_MAX_OPEN, NULL, 0, STG(optim.beta2),
     0, 0, "AdamW second-moment decay"},
    {"optimizer", "eps", R1_KEY_FLOAT, "1e-08", 0, 1, R1_KEY_MIN_OPEN | R1_KEY_MAX_OPEN, NULL, 0,
     STG(optim.eps), 0, 0, "AdamW epsilon"},
    {"optimizer", "weight_decay", R1_KEY_FLOAT, "0.1", 0, 10, R1_KEY_MAX_OPEN, NULL, 0,
     STG(optim.weight_decay), 0, 0, "decoupled weight decay (matrices only)"},
    {"optimizer", "max_grad_norm", R1_KEY_FLOAT, "1", -BIG, BIG, 0, NULL, 0,
     STG(optim.max_grad_norm), 0, 0, "clip the global gradient norm (<= 0: no clipping)"},
    {"optimizer", "schedule", R1_KEY_ENUM, "constant", 0, 0, 0, "constant|cosine|linear", 0,
     STG(optim.schedule), 0, 0, "learning-rate schedule after warm-up"},
    {"optimizer", "warmup_steps", R1_KEY_INT, "0", 0, BIG, 0, NULL, 0, STG(optim.warmup_steps), 0,
     0, "linear warm-up steps"},
    {"optimizer", "zero", R1_KEY_INT, "0", 0, 1, 0, NULL, 0, STG(optim.zero), 0, 0,
     "ZeRO stage under mpirun: 1 shards AdamW's moments over the ranks (each updates its share "
     "of the parameters, which are then gathered; each rank saves its shard)"},
    {"optimizer", "grad_bucket_mb", R1_KEY_FLOAT, "25", 0, 65536, 0, NULL, 0,
     STG(optim.grad_bucket_mb), 0, 0, "under mpirun: MiB of gradients per sum over the ranks, "
     "each bucket summed as soon as the backward has finished it, while the backward goes on "
     "(0: one sum after the backward)"},

    {"data", "path", R1_KEY_STRING, NULL, 0, 0, 0, NULL, 0, STG(data.path), 0, 0,
     "data file (relative to the recipe file; must exist)"},
    {"data", "stage", R1_KEY_STRING, NULL, 0, 0, 0, NULL, 0, STG(data.stage), 0, 0,
     "read the data produced by this earlier stage"},
    {"data", "generator", R1_KEY_STRING, NULL, 0, 0, 0, NULL, 0, STG(data.generator), 0, 0,
     "a built-in data generator"},
    {"data", "format", R1_KEY_ENUM, "jsonl", 0, 0, 0, "text|jsonl", 0, STG(data.format), 0, 0,
     "file format: plain text or one JSON object per line"},
    {"data", "text_field", R1_KEY_STRING, "text", 0, 0, 0, NULL, 0, STG(data.text_field), 0, 0,
     "JSONL field holding raw text (pretrain)"},
    {"data", "prompt_field", R1_KEY_STRING, "prompt", 0, 0, 0, NULL, 0, STG(data.prompt_field), 0,
     0, "JSONL field holding the prompt"},
    {"data", "completion_field", R1_KEY_STRING, "completion", 0, 0, 0, NULL, 0,
     STG(data.completion_field), 0, 0, "JSONL field holding the target completion (sft)"},
    {"data", "answer_field", R1_KEY_STRING, "answer", 0, 0, 0, NULL, 0, STG(data.answer_field), 0,
     0, "JSONL field holding the reference answer (rewards)"},
    {"data", "eval_path", R1_KEY_STRING, NULL, 0, 0, 0, NULL, 0, STG(data.eval_path), 0, 0,
     "held-out evaluation file (relative to the recipe file; must exist)"},
    {"data", "template", R1_KEY_STRING, NULL, 0, 0, 0, NULL, 0, STG(data.template_), 0, 0,
     "prompt template: none, r1-zero or text with {prompt} (applied to every prompt)"},
    {"data", "size", R1_KEY_INT, "10000", 1, 100000000, 0, NULL, 0, STG(data.size), 0, 0,
     "examples drawn from data.generator"},
    {"data", "eval_size", R1_KEY_INT, "200", 0, 100000000, 0, NULL, 0, STG(data.eval_size), 0, 0,
     "held-out examples drawn from data.generator's disjoint eval split (0: none)"},
    {"data", "pack", R1_KEY_BOOL, "false", 0, 0, 0, NULL, K(SFT) | K(REJECTION_SFT), STG(data.pack),
     0, 0, "pack several examples into each seq_len row, each attending only to itself"},
    {"data", "messages_field", R1_KEY_STRING, "messages", 0, 0, 0, NULL, K(SFT) | K(REJECTION_SFT),
     STG(data.messages_field), 0, 0,
     "JSONL field holding a chat [{role, content}, ...]; loss on assistant turns only"},

    {"grpo", "prompts_per_step", R1_KEY_INT, "8", 1, 1048576, 0, NULL, KINDS_GRPO,
     STG(grpo.prompts_per_step), 0, 0, "prompts sampled per step"},
    {"grpo", "group_size", R1_KEY_INT, "8", 2, 4096, 0, NULL, KINDS_GRPO, STG(grpo.group_size), 0,
     0, "completions per prompt (G)"},
    {"grpo", "temperature", R1_KEY_FLOAT, "1", 0, 10, 0, NULL, KINDS_GRPO, STG(grpo.temperature),
     0, 0, "sampling temperature"},
    {"grpo", "top_p", R1_KEY_FLOAT, "1", 0, 1, R1_KEY_MIN_OPEN, NULL, KINDS_GRPO,
     STG(grpo.top_p), 0, 0, "nucleus sampling mass"},
    {"grpo", "max_completion_len", R1_KEY_INT, "256", 1, 1048576, 0, NULL, KINDS_GRPO,
     STG(grpo.max_completion_len), 0, 0, "tokens per completion at most"},
    {"grpo", "iterations", R1_KEY_INT, "1", 1, 1024, 0, NULL, KINDS_GRPO, STG(grpo.iterations), 0,
     0, "policy updates per generated batch (mu)"},
    {"grpo", "minibatches", R1_KEY_INT, "1", 1, 1048576, 0, NULL, KINDS_GRPO,
     STG(grpo.minibatches), 0, 0, "optimizer updates per iteration; must divide prompts_per_step*group_size"},
    {"grpo", "epsilon_low", R1_KEY_FLOAT, "0.2", 0, 1, 0, NULL, KINDS_GRPO, STG(grpo.epsilon_low),
     0, 0, "lower clip range of the ratio"},
    {"grpo", "epsilon_high", R1_KEY_FLOAT, "0.2", 0, 10, 0, NULL, KINDS_GRPO,
     STG(grpo.epsilon_high), 0, 0, "upper clip range of the ratio (DAPO: 0.28)"},
    {"grpo", "beta", R1_KEY_FLOAT, "0.04", 0, 10, 0, NULL, KINDS_GRPO, STG(grpo.beta), 0, 0,
     "KL penalty towards the reference model (0: no reference model)"},
    {"grpo", "loss_type", R1_KEY_ENUM, "grpo", 0, 0, 0, "grpo|bnpo|dr_grpo|dapo", KINDS_GRPO,
     STG(grpo.loss_type), 0, 0, "how token losses are averaged"},
    {"grpo", "scale_rewards", R1_KEY_ENUM, "group", 0, 0, 0, "group|batch|none", KINDS_GRPO,
     STG(grpo.scale_rewards), 0, 0, "divide advantages by the reward std of the group or batch"},
    {"grpo", "mask_truncated", R1_KEY_BOOL, "false", 0, 0, 0, NULL, KINDS_GRPO,
     STG(grpo.mask_truncated), 0, 0, "drop completions that hit max_completion_len from the loss"},
    {"grpo", "ref_reset_every", R1_KEY_INT, "0", 0, BIG, 0, NULL, KINDS_GRPO,
     STG(grpo.ref_reset_every), 0, 0, "copy the policy into the reference model every N steps (0: never)"},
    {"grpo", "entropy_coef", R1_KEY_FLOAT, "0", -10, 10, 0, NULL, KINDS_GRPO,
     STG(grpo.entropy_coef), 0, 0, "entropy bonus coefficient (loss -= coef * token entropy)"},
    {"grpo", "dynamic_sampling", R1_KEY_BOOL, "false", 0, 0, 0, NULL, KINDS_GRPO,
     STG(grpo.dynamic_sampling), 0, 0, "replace groups whose rewards are all equal by new prompts (DAPO)"},
    {"grpo", "max_draws", R1_KEY_INT, "4", 1, 1024, 0, NULL, KINDS_GRPO, STG(grpo.max_draws), 0,
     0, "dynamic sampling: prompt batches generated per step at most"},
    {"grpo", "overlong_buffer", R1_KEY_INT, "0", 0, 1048576, 0, NULL, KINDS_GRPO,
     STG(grpo.overlong_buffer), 0, 0, "soft overlong penalty: last N tokens before the limit (0: off)"},
    {"grpo", "overlong_penalty", R1_KEY_FLOAT, "1", 0, 1000, 0, NULL, KINDS_GRPO,
     STG(grpo.overlong_penalty), 0, 0, "soft overlong penalty at the limit (linear inside the buffer)"},
    {"grpo", "samples_every", R1_KEY_INT, "10", 0, BIG, 0, NULL, KINDS_GRPO,
     STG(grpo.samples_every), 0, 0, "log completions to samples/<stage>.jsonl every N steps (0: never)"},
    {"grpo", "samples_count", R1_KEY_INT, "4", 1, 4096, 0, NULL, KINDS_GRPO,
     STG(grpo.samples_count), 0, 0, "completions logged each time"},
    {"grpo", "eval_samples", R1_KEY_INT, "4", 1, 4096, 0, NULL, KINDS_GRPO,
     STG(grpo.eval_samples), 0, 0, "completions per held-out prompt; eval/accuracy is pass@1 over them"},
    {"grpo", "eval_temperature", R1_KEY_FLOAT, "0.6", 0, 10, 0, NULL, KINDS_GRPO,
     STG(grpo.eval_temperature), 0, 0, "sampling temperature of evaluation (0: greedy)"},
    {"grpo", "accuracy_reward", R1_KEY_STRING, "accuracy", 0, 0, 0, NULL, KINDS_GRPO,
     STG(grpo.accuracy_reward), 0, 0, "reward whose value >= 1 marks a correct answer (accuracy, countdown)"},
    {"grpo", "rewards", R1_KEY_LIST, NULL, 0, 0, R1_KEY_REQUIRED, "reward", KINDS_GRPO,
     STG(grpo.rewards), STG(grpo.n_rewards), sizeof(struct r1_reward_cfg),
     "reward functions, summed with their weights (at least one)"},
    {"reward", "name", R1_KEY_STRING, NULL, 0, 0, R1_KEY_REQUIRED, NULL, 0, RWD(name), 0, 0,
     "reward function name"},
    {"reward", "weight", R1_KEY_FLOAT, "1", -1000, 1000, 0, NULL, 0, RWD(weight), 0, 0,
     "its weight in the total reward"},
    {"reward", "answer", R1_KEY_ENUM, "auto", 0, 0, 0, "auto|boxed|tag|tag_last", 0, RWD(answer), 0,
     0, "where the final answer is read: <answer> block or \\boxed{} (accuracy, length_cosine)"},
    {"reward", "language", R1_KEY_STRING, "en", 0, 0, 0, NULL, 0, RWD(language), 0, 0,
     "target language of the chain of thought (language): en, zh, ja, ko, ru, ar, ..."},
    {"reward", "ngram", R1_KEY_INT, "3", 1, 64, 0, NULL, 0, RWD(ngram), 0, 0,
     "n-gram size (repetition)"},
    {"reward", "max_penalty", R1_KEY_FLOAT, "-1", -1000, 0, 0, NULL, 0, RWD(max_penalty), 0, 0,
     "reward of a fully repeated text (repetition)"},
    {"reward", "judge", R1_KEY_STRING, NULL, 0, 0, 0, NULL, 0, RWD(judge.spec), 0, 0,
     "judge model (judge): an earlier stage, a Hugging Face dir or a .gguf file"},
    {"reward", "judge_template", R1_KEY_STRING, NULL, 0, 0, 0, NULL, 0, RWD(judge_template), 0, 0,
     "judge prompt with {question}, {reference}, {prediction} (judge; default: the built-in one)"},
    {"reward", "verdict", R1_KEY_ENUM, "probability", 0, 0, 0, "probability|binary", 0,
     RWD(verdict), 0, 0, "judge: the reward is P(yes), or 1 when P(yes) >= threshold else 0"},
    {"reward", "threshold", R1_KEY_FLOAT, "0.5", 0, 1, 0, NULL, 0, RWD(threshold), 0, 0,
     "judge: P(yes) a binary verdict needs"},

    {"rejection", "source", R1_KEY_STRING, NULL, 0, 0, 0, NULL, K(REJECTION_SFT),
     STG(rejection.source.spec), 0, 0,
     "model that samples: an earlier stage, scratch:<preset> or a model dir (default: the previous "
     "stage, skipping reward_model stages)"},
    {"rejection", "samples_per_prompt", R1_KEY_INT, "16", 1, 4096, 0, NULL, K(REJECTION_SFT),
     STG(rejection.samples_per_prompt), 0, 0, "completions sampled per prompt"},
    {"rejection", "max_completion_len", R1_KEY_INT, "512", 1, 1048576, 0, NULL, K(REJECTION_SFT),
     STG(rejection.max_completion_len), 0, 0, "tokens per completion at most"},
    {"rejection", "temperature", R1_KEY_FLOAT, "0.7", 0, 10, 0, NULL, K(REJECTION_SFT),
     STG(rejection.temperature), 0, 0, "sampling temperature"},
    {"rejection", "keep_per_prompt", R1_KEY_INT, "1", 1, 4096, 0, NULL, K(REJECTION_SFT),
     STG(rejection.keep_per_prompt), 0, 0, "accepted completions kept per prompt (<= samples_per_prompt)"},
    {"rejection", "top_p", R1_KEY_FLOAT, "1", 0, 1, R1_KEY_MIN_OPEN, NULL, K(REJECTION_SFT),
     STG(rejection.top_p), 0, 0, "nucleus sampling mass"},
    {"rejection", "prompts_per_step", R1_KEY_INT, "8", 1, 1048576, 0, NULL, K(REJECTION_SFT),
     STG(rejection.prompts_per_step), 0, 0, "prompts sampled per generation step (one progress unit)"},
    {"rejection", "max_prompts", R1_KEY_INT, "0", 0, BIG, 0, NULL, K(REJECTION_SFT),
     STG(rejection.max_prompts), 0, 0, "prompts used (0: the whole prompt set)"},
    {"rejection", "rewards", R1_KEY_LIST, NULL, 0, 0, R1_KEY_REQUIRED, "reward", K(REJECTION_SFT),
     STG(rejection.rewards), STG(rejection.n_rewards), sizeof(struct r1_reward_cfg),
     "rewards summed with their weights; a completion needs min_reward"},
    {"rejection", "min_reward", R1_KEY_FLOAT, "1", -BIG, BIG, 0, NULL, K(REJECTION_SFT),
     STG(rejection.min_reward), 0, 0, "weighted reward sum a completion needs (correctness)"},
    {"rejection", "require_format", R1_KEY_BOOL, "true", 0, 0, 0, NULL, K(REJECTION_SFT),
     STG(rejection.require_format), 0, 0, "keep only <think>…</think> completions with an answer"},
    {"rejection", "language", R1_KEY_STRING, "en", 0, 0, 0, NULL, K(REJECTION_SFT),
     STG(rejection.language), 0, 0, "language of the completion (min_language)"},
    {"rejection", "min_language", R1_KEY_FLOAT, "0", 0, 1, 0, NULL, K(REJECTION_SFT),
     STG(rejection.min_language), 0, 0, "share of the words in that language at least (0: off)"},
    {"rejection", "min_tokens", R1_KEY_INT, "1", 0, BIG, 0, NULL, K(REJECTION_SFT),
     STG(rejection.min_tokens), 0, 0, "completion tokens at least"},
    {"rejection", "max_tokens", R1_KEY_INT, "0", 0, BIG, 0, NULL, K(REJECTION_SFT),
     STG(rejection.max_tokens), 0, 0, "completion tokens at most (0: no bound; truncated ones are always rejected)"},
    {"rejection", "no_code_blocks", R1_KEY_BOOL, "false", 0, 0, 0, NULL, K(REJECTION_SFT),
     STG(rejection.no_code_blocks), 0, 0, "reject completions holding a ``` fenced code block"},
    {"rejection", "max_paragraph_chars", R1_KEY_INT, "0", 0, BIG, 0, NULL, K(REJECTION_SFT),
     STG(rejection.max_paragraph_chars), 0, 0, "reject a completion with a longer paragraph (0: off)"},
    {"rejection", "dedup_threshold", R1_KEY_FLOAT, "0.9", 0, 1, 0, NULL, K(REJECTION_SFT),
     STG(rejection.dedup_threshold), 0, 0,
     "drop a completion this similar (word-trigram Jaccard) to one kept for the prompt (0: off)"},
    {"rejection", "mix_path", R1_KEY_STRING, NULL, 0, 0, 0, NULL, K(REJECTION_SFT),
     STG(rejection.mix_path), 0, 0, "non-reasoning JSONL (prompt/response) mixed into the dataset"},
    {"rejection", "mix_ratio", R1_KEY_FLOAT, "0", 0, 1, R1_KEY_MAX_OPEN, NULL, K(REJECTION_SFT),
     STG(rejection.mix_ratio), 0, 0, "share of the final dataset taken from mix_path"},
    {"rejection", "mix_prompt_field", R1_KEY_STRING, "prompt", 0, 0, 0, NULL, K(REJECTION_SFT),
     STG(rejection.mix_prompt_field), 0, 0, "mix_path field holding the prompt"},
    {"rejection", "mix_response_field", R1_KEY_STRING, "response", 0, 0, 0, NULL, K(REJECTION_SFT),
     STG(rejection.mix_response_field), 0, 0, "mix_path field holding the response"},

    {"reward_model", "mode", R1_KEY_ENUM, "pairwise", 0, 0, 0, "pairwise|pointwise", K(REWARD_MODEL),
     STG(reward_model.mode), 0, 0,
     "pairwise: preference pairs, Bradley-Terry loss; pointwise: (prompt, response, label) "
     "items, binary cross-entropy (a safety reward model; eval accuracy and AUC)"},
    {"reward_model", "response_field", R1_KEY_STRING, "response", 0, 0, 0, NULL, K(REWARD_MODEL),
     STG(reward_model.response_field), 0, 0, "pointwise: JSONL field holding the response"},
    {"reward_model", "label_field", R1_KEY_STRING, "label", 0, 0, 0, NULL, K(REWARD_MODEL),
     STG(reward_model.label_field), 0, 0,
     "pointwise: JSONL field holding the label (safe/unsafe, true/false or 1/0)"},
    {"reward_model", "margin", R1_KEY_FLOAT, "0", 0, 100, 0, NULL, K(REWARD_MODEL),
     STG(reward_model.margin), 0, 0, "margin of the pairwise ranking loss"},
    {"reward_model", "chosen_field", R1_KEY_STRING, "chosen", 0, 0, 0, NULL, K(REWARD_MODEL),
     STG(reward_model.chosen_field), 0, 0, "JSONL field holding the preferred response"},
    {"reward_model", "rejected_field", R1_KEY_STRING, "rejected", 0, 0, 0, NULL, K(REWARD_MODEL),
     STG(reward_model.rejected_field), 0, 0, "JSONL field holding the dispreferred response"},

    {"align", "reward_model", R1_KEY_STRING, NULL, 0, 0, 0, NULL, K(ALIGN),
     STG(align.reward_model.spec), 0, 0,
     "reward model: an earlier reward_model stage or a model dir (default: the latest such stage)"},
    {"align", "rm_scope", R1_KEY_ENUM, "summary", 0, 0, 0, "summary|full", K(ALIGN),
     STG(align.rm_scope), 0, 0, "what the reward model reads: the text after </think>, or all of it"},
    {"align", "rm_start_step", R1_KEY_INT, "0", 0, BIG, 0, NULL, K(ALIGN), STG(align.rm_start_step),
     0, 0, "the reward model scores from this step on (0: the whole stage)"},
    {"align", "safety_model", R1_KEY_STRING, NULL, 0, 0, 0, NULL, K(ALIGN),
     STG(align.safety_model.spec), 0, 0,
     "safety reward model: an earlier reward_model stage in mode pointwise, or a model dir "
     "saved by one (default: none); it reads whole completions, thinking included"},
    {"align", "safety_weight", R1_KEY_FLOAT, "1", -1000, 1000, 0, NULL, K(ALIGN),
     STG(align.safety_weight), 0, 0,
     "weight of the safety reward, P(safe) in [0, 1] (with align.safety_model)"},
    {"align", "rm_weight", R1_KEY_FLOAT, "1", -1000, 1000, 0, NULL, K(ALIGN), STG(align.rm_weight),
     0, 0, "weight of the reward model's score on general prompts"},
    {"align", "general_path", R1_KEY_STRING, NULL, 0, 0, 0, NULL, K(ALIGN), STG(align.general_path),
     0, 0, "general prompts without a reference answer (JSONL), scored by the reward model"},
    {"align", "general_generator", R1_KEY_STRING, NULL, 0, 0, 0, NULL, K(ALIGN),
     STG(align.general_generator), 0, 0, "or a generator of general prompts (prefs:...)"},
    {"align", "general_size", R1_KEY_INT, "1000", 1, 100000000, 0, NULL, K(ALIGN),
     STG(align.general_size), 0, 0, "prompts drawn from general_generator"},
};
/* clang-format on */

static const char *const kind_names[R1_STAGE_N_KINDS] = {
    "pretrain", "sft", "grpo", "rejection_sft", "reward_model", "align",
};

const struct r1_recipe_key *r1_recipe_schema(int *n)
{
    *n = (int)(sizeof(schema) / sizeof(schema[0]));
    return schema;
}

const char *r1_stage_kind_name(enum r1_stage_kind k)
{
    return (unsigned)k < R1_STAGE_N_KINDS ? kind_names[k] : "?";
}

/* The index-th choice of "a|b|c" into buf. */
static const char *choice_name(const char *choices, int index, char *buf, size_t cap)
{
    const char *p = choices;
    for (int i = 0; i < index && p; i++) {
        p = strchr(p, '|');
        if (p)
            p++;
    }
    if (!p)
        return "?";
    size_t n = strcspn(p, "|");
    if (n >= cap)
        n = cap - 1;
    memcpy(buf, p, n);
    buf[n] = '\0';
    return buf;
}

/* Shortest decimal that reads back as the same float. */
static void format_float(char *buf, size_t cap, float v)
{
    for (int prec = 1; prec <= 9; prec++) {
        snprintf(buf, cap, "%.*g", prec, (double)v);
        if ((float)strtod(buf, NULL) == v)
            return;
    }
}

static void write_quoted(FILE *f, const char *s)
{
    fputc('"', f);
    for (const unsigned char *p = (const unsigned char *)s; *p; p++) {
        if (*p == '"' || *p == '\\')
            fprintf(f, "\\%c", *p);
        else if (*p == '\n')
            fputs("\\n", f);
        else if (*p == '\t')
            fputs("\\t", f);
        else if (*p < 0x20 || *p == 0x7f)
            fprintf(f, "\\x%02x", *p);
        else
            fputc(*p, f);
    }
    fputc('"', f);
}

static bool applies(const struct r1_recipe_key *k, int kind)
{
    return kind < 0 || k->kinds == 0 || (k->kinds & (1u << kind));
}

static void dump_section(FILE *f, const char *section, const char *base, int kind, int indent,
                         bool dash)
{
    int n;
    const struct r1_recipe_key *t = r1_recipe_schema(&n);
    for (int i = 0; i < n; i++) {
        const struct r1_recipe_key *k = &t[i];
        if (strcmp(k->section, section) != 0 || (k->flags & R1_KEY_NODUMP) || !applies(k, kind))
            continue;
        const char *p = base + k->offset;
        if (k->type == R1_KEY_STRING && !*(char *const *)p)
            continue;
        if (k->type == R1_KEY_INT && !k->def && *(const int64_t *)p == 0)
            continue;
        if (dash)
            fprintf(f, "%*s- ", indent - 2, "");
        else
            fprintf(f, "%*s", indent, "");
        dash = false;
        fprintf(f, "%s:", k->key);
        char buf[64];
        switch (k->type) {
        case R1_KEY_INT:
            fprintf(f, " %" PRId64 "\n", *(const int64_t *)p);
            break;
        case R1_KEY_FLOAT:
            format_float(buf, sizeof(buf), *(const float *)p);
            fprintf(f, " %s\n", buf);
            break;
        case R1_KEY_BOOL:
            fprintf(f, " %s\n", *(const bool *)p ? "true" : "false");
            break;
        case R1_KEY_STRING:
            fputc(' ', f);
            write_quoted(f, *(char *const *)p);
            fputc('\n', f);
            break;
        case R1_KEY_ENUM:
            fprintf(f, " %s\n", choice_name(k->choices, *(const int *)p, buf, sizeof(buf)));
            break;
        case R1_KEY_MAP:
            fputc('\n', f);
            dump_section(f, k->choices, base, kind, indent + 2, false);
            break;
        case R1_KEY_LIST: {
            const char *items = *(char *const *)p;
            int count = *(const int *)(base + k->count_offset);
            if (count == 0) {
                fputs(" []\n", f);
                break;
            }
            fputc('\n', f);
            for (int j = 0; j < count; j++) {
                const char *item = items + (size_t)j * k->item_size;
                int ik = strcmp(k->choices, "stage") == 0
                             ? (int)((const struct r1_stage_cfg *)(const void *)item)->kind
                             : kind;
                dump_section(f, k->choices, item, ik, indent + 4, true);
            }
            break;
        }
        }
    }
}

int r1_recipe_write_yaml(const struct r1_recipe *r, FILE *f)
{
    fputs("# r1 recipe, fully resolved (every default filled in)\n", f);
    dump_section(f, "", (const char *)r, -1, 0, false);
    if (ferror(f))
        return r1_err_set(R1_EIO, "writing the resolved recipe failed");
    return 0;
}

int r1_recipe_hash(const struct r1_recipe *r, char hex[65])
{
    char *buf = NULL;
    size_t len = 0;
    FILE *f = open_memstream(&buf, &len);
    if (!f)
        return r1_err_set(R1_ENOMEM, "recipe hash: out of memory");
    int rc = r1_recipe_write_yaml(r, f);
    if (fclose(f) != 0 && !rc)
        rc = r1_err_set(R1_ENOMEM, "recipe hash: out of memory");
    if (rc) {
        free(buf);
        return rc;
    }
    unsigned char md[EVP_MAX_MD_SIZE];
    unsigned int mdlen = 0;
    if (!EVP_Digest(buf, len, md, &mdlen, EVP_sha256(), NULL)) {
        free(buf);
        return r1_err_set(R1_ESTATE, "recipe hash: sha256 failed");
    }
    free(buf);
    for (unsigned i = 0; i < mdlen && i < 32; i++)
        snprintf(hex + 2 * i, 3, "%02x", md[i]);
    hex[64] = '\0';
    return 0;
}

/* "stages[].grpo." for section "grpo": the path of the rows that hold a section. */
static void section_path(const char *section, char *buf, size_t cap)
{
    buf[0] = '\0';
    if (section[0] == '\0')
        return;
    int n;
    const struct r1_recipe_key *t = r1_recipe_schema(&n);
    for (int i = 0; i < n; i++) {
        if ((t[i].type == R1_KEY_MAP || t[i].type == R1_KEY_LIST) &&
            strcmp(t[i].choices, section) == 0) {
            char parent[128];
            section_path(t[i].section, parent, sizeof(parent));
            snprintf(buf, cap, "%s%s%s.", parent, t[i].key, t[i].type == R1_KEY_LIST ? "[]" : "");
            return;
        }
    }
}

static void format_bound(char *buf, size_t cap, double v, enum r1_key_type type)
{
    if (type == R1_KEY_INT)
        snprintf(buf, cap, "%.0f", v);
    else
        snprintf(buf, cap, "%g", v);
}

void r1_recipe_key_range(const struct r1_recipe_key *k, char *buf, size_t cap)
{
    char lo[32], hi[32];
    buf[0] = '\0';
    if (k->type == R1_KEY_ENUM) {
        snprintf(buf, cap, "%s", k->choices);
        return;
    }
    if (k->type != R1_KEY_INT && k->type != R1_KEY_FLOAT)
        return;
    format_bound(lo, sizeof(lo), k->min, k->type);
    format_bound(hi, sizeof(hi), k->max, k->type);
    if (k->min <= -BIG && k->max >= BIG)
        snprintf(buf, cap, "any");
    else if (k->max >= BIG)
        snprintf(buf, cap, "%s %s", (k->flags & R1_KEY_MIN_OPEN) ? ">" : ">=", lo);
    else
        snprintf(buf, cap, "%c%s, %s%c", (k->flags & R1_KEY_MIN_OPEN) ? '(' : '[', lo, hi,
                 (k->flags & R1_KEY_MAX_OPEN) ? ')' : ']');
}

int r1_recipe_write_keys(FILE *f)
{
    static const char *const type_names[] = {"int", "float", "bool", "string",
                                             "enum", "map", "list"};
    int n;
    const struct r1_recipe_key *t = r1_recipe_schema(&n);
    fputs("| key | type | default | range | stages | description |\n", f);
    fputs("|---|---|---|---|---|---|\n", f);
    for (int i = 0; i < n; i++) {
        const struct r1_recipe_key *k = &t[i];
        char path[160], range[96], kinds[128] = "";
        section_path(k->section, path, sizeof(path));
        r1_recipe_key_range(k, range, sizeof(range));
        for (char *p = range; (p = strchr(p, '|'));)
            *p = '/'; /* a '|' would split the markdown cell */
        if (k->kinds) {
            for (int j = 0; j < R1_STAGE_N_KINDS; j++) {
                if (!(k->kinds & (1u << j)))
                    continue;
                if (kinds[0])
                    strncat(kinds, ", ", sizeof(kinds) - strlen(kinds) - 1);
                strncat(kinds, kind_names[j], sizeof(kinds) - strlen(kinds) - 1);
            }
        } else if (strncmp(path, "stages", 6) == 0) {
            snprintf(kinds, sizeof(kinds), "all");
        }
        const char *def = k->def ? k->def : (k->flags & R1_KEY_REQUIRED) ? "(required)" : "";
        if (strcmp(k->section, "stage") == 0 && strcmp(k->key, "init") == 0)
            def = "previous stage";
        if (strcmp(k->section, "stage") == 0 && strcmp(k->key, "micro_batch_size") == 0)
            def = "batch_size";
        fprintf(f, "| %s%s%s | %s | %s | %s | %s | %s |\n", path, k->key,
                k->type == R1_KEY_LIST ? "[]" : "", type_names[k->type], def,
                range, kinds, k->help);
    }
    if (ferror(f))
        return r1_err_set(R1_EIO, "writing the recipe keys failed");
    return 0;
}
