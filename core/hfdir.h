/* hfdir.h - Hugging Face model directories: config.json + model.safetensors.
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

/* Writes dir/config.json and dir/model.safetensors (weights in dtype: F32 or BF16);
 * creates dir when missing.  Each file is written atomically. */
int r1_hfdir_save(const struct r1_model *m, const char *dir, enum r1_dtype dtype);
/* Creates a model on be from dir/config.json and loads dir/model.safetensors. */
int r1_hfdir_load(struct r1_model **out, struct r1_backend *be, const char *dir);
/* Loads weights from a safetensors file into an existing model (names and shapes must match). */
/* The weights alone as one safetensors file (HF tensor names). */
int r1_model_save_safetensors(const struct r1_model *m, const char *path, enum r1_dtype dtype);
int r1_model_load_safetensors(struct r1_model *m, const char *path);

/* The tokenizer of a model directory: the byte-level tokenizer when config.json
 * says "r1_tokenizer": "bytes"; R1_EFORMAT naming the directory otherwise. */
int r1_hfdir_load_tokenizer(struct r1_tokenizer **out, const char *dir);

#endif
