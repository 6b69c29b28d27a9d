/* hfdir.h - Hugging Face model directories: config.json + model.safetensors, or
 * weights sharded as model-0000k-of-0000n.safetensors with model.safetensors.index.json
 * ({"metadata": {"total_size": bytes}, "weight_map": {tensor: file}}), as transformers
 * writes them.  Weights are read as F32, BF16 or F16 and written in any of those.
 *
 * Names and config keys follow transformers' LlamaForCausalLM / Qwen2ForCausalLM
 * so a saved directory loads there unchanged.  A byte-level r1 tokenizer is
 * recorded as "r1_tokenizer": "bytes" in config.json (ignored by transformers).
 * A model with a score head (cfg.num_labels 1, a reward model) is written and read
 * as <Arch>ForSequenceClassification: "num_labels": 1, a pad_token_id, and the
 * tensor "score.weight" (1, C) with the others; a config that names a
 * *ForSequenceClassification architecture loads as a score-head model. */
#ifndef R1_HFDIR_H
#define R1_HFDIR_H

#include "core/model.h"
#include "core/tokenizer.h"

int r1_model_config_load_json(struct r1_model_config *c, const char *path);
int r1_model_config_save_json(const struct r1_model_config *c, const char *path,
                              enum r1_dtype dtype);

/* Writes dir/config.json and dir/model.safetensors (weights in dtype: F32, BF16 or F16);
 * creates dir when missing.  Each file is written atomically. */
int r1_hfdir_save(const struct r1_model *m, const char *dir, enum r1_dtype dtype);
/* Creates a model on be from dir/config.json and loads dir/model.safetensors, or the
 * shards dir/model.safetensors.index.json lists when there is no model.safetensors. */
int r1_hfdir_load(struct r1_model **out, struct r1_backend *be, const char *dir);
/* The weights alone as one safetensors file (HF tensor names). */
int r1_model_save_safetensors(const struct r1_model *m, const char *path, enum r1_dtype dtype);
/* Loads weights from a safetensors file into an existing model (names and shapes must
 * match; extra tensors in the file are ignored). */
int r1_model_load_safetensors(struct r1_model *m, const char *path);
/* The same from the shards a model.safetensors.index.json names (its directory). */
int r1_model_load_safetensors_index(struct r1_model *m, const char *index_path);

/* ---- full export (core/hfdir-write.c) ----------------------------------------- */
#define R1_HFDIR_SHARD_DEFAULT 5000000000ULL /* transformers' "5GB" */

struct r1_hfdir_write_opts {
    enum r1_dtype dtype;       /* F32, BF16 or F16 */
    uint64_t max_shard_bytes;  /* weights past this are sharded (0: never) */
    const char *src_dir;       /* a HF dir whose tokenizer / generation files are copied;
                                * may be NULL */
};
/* Tokenizer and generation files a model directory may carry (NULL-terminated). */
extern const char *const r1_hfdir_extra_files[];
/* Writes dir (created when missing): config.json; model.safetensors, or when the
 * weights exceed max_shard_bytes, model-0000k-of-0000n.safetensors (tensors in model
 * order, each shard at most max_shard_bytes unless one tensor is larger) and
 * model.safetensors.index.json; the r1_hfdir_extra_files src_dir has; and
 * generation_config.json with the bos/eos/pad ids when src_dir has none. */
int r1_hfdir_write(const struct r1_model *m, const char *dir,
                   const struct r1_hfdir_write_opts *o);
/* Removes dir and the plain files in it: the cleanup of a temporary directory a failed
 * r1_hfdir_write left (never point it at a directory the caller did not create). */
void r1_hfdir_remove(const char *dir);

/* The tokenizer of a model directory: the byte-level tokenizer when config.json
 * says "r1_tokenizer": "bytes"; R1_EFORMAT naming the directory otherwise. */
int r1_hfdir_load_tokenizer(struct r1_tokenizer **out, const char *dir);

#endif
