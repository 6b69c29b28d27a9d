/* modelfile.h - opening a model by path, whatever its format.
 *
 * A path is a GGUF file (by its magic, whatever its name) or a Hugging Face directory
 * (config.json + safetensors + tokenizer files).  The tokenizer comes with the model:
 * the GGUF's tokenizer.ggml.* metadata, or the directory's tokenizer.json (byte-level
 * BPE) or r1's byte-level tokenizer ("r1_tokenizer": "bytes" in config.json). */
#ifndef R1_MODELFILE_H
#define R1_MODELFILE_H

#include "core/backend.h"
#include "core/model.h"
#include "core/tokenizer.h"

/* True when path is a regular file starting with the GGUF magic. */
bool r1_modelfile_is_gguf(const char *path);
/* The model and its tokenizer; both belong to the caller.  R1_EINVAL when path does
 * not exist, R1_EIO when it cannot be read, R1_EFORMAT naming the file when it is malformed. */
int r1_model_open(struct r1_model **m, struct r1_tokenizer **tok, struct r1_backend *be,
                  const char *path);
/* The model's configuration alone (no weights are read): the GGUF's metadata or the
 * directory's config.json.  Errors as r1_model_open. */
int r1_model_config_open(struct r1_model_config *out, const char *path);
/* The tokenizer alone (no weights are read). */
int r1_tokenizer_open(struct r1_tokenizer **tok, const char *path);
/* Writes the tokenizer files of tok into the model directory dir: tokenizer.json and
 * tokenizer_config.json for BPE; nothing for the byte-level tokenizer (config.json
 * carries its marker). */
int r1_tokenizer_save_dir(const struct r1_tokenizer *tok, const char *dir);

#endif
