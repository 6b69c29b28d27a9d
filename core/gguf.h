/* gguf.h - reading GGUF files (llama.cpp's model format, versions 2 and 3).
 *
 * Layout (little-endian): "GGUF", u32 version, u64 tensor count, u64 metadata count,
 * the metadata (key string, u32 value type, value), the tensor infos (name string,
 * u32 n_dims, u64 dims[n_dims] innermost first, u32 ggml type, u64 offset), padding
 * to general.alignment (default 32), then the data region; each tensor's offset is
 * relative to its start and a multiple of the alignment.  A string is a u64 length
 * and that many bytes; an array is a u32 element type, a u64 count and the elements.
 *
 * r1_gguf_open maps the file and checks every length, count, offset and type against
 * it before anything is read, so a malformed file gives R1_EFORMAT with one line that
 * names the file and the key or tensor, never a crash.  Strings are handed out as
 * NUL-terminated copies; numeric arrays as aligned copies in native types.
 *
 * Dimensions: t->ne[0] is the innermost (contiguous) one, so a matrix stored as
 * ne = {in, out} is the row-major (out, in) matrix of Hugging Face. */
#ifndef R1_GGUF_H
#define R1_GGUF_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "core/backend.h"
#include "core/model.h"

/* Metadata value types, numbered as in the file. */
enum r1_gguf_type {
    R1_GGUF_U8 = 0,
    R1_GGUF_I8 = 1,
    R1_GGUF_U16 = 2,
    R1_GGUF_I16 = 3,
    R1_GGUF_U32 = 4,
    R1_GGUF_I32 = 5,
    R1_GGUF_F32 = 6,
    R1_GGUF_BOOL = 7,
    R1_GGUF_STRING = 8,
    R1_GGUF_ARRAY = 9,
    R1_GGUF_U64 = 10,
    R1_GGUF_I64 = 11,
    R1_GGUF_F64 = 12,
    R1_GGUF_TYPE_COUNT
};

/* Tensor data types r1 reads (ggml's numbering; others are rejected by name). */
enum r1_ggml_type {
    R1_GGML_F32 = 0,
    R1_GGML_F16 = 1,
    R1_GGML_Q4_0 = 2,
    R1_GGML_Q4_1 = 3,
    R1_GGML_Q5_0 = 6,
    R1_GGML_Q5_1 = 7,
    R1_GGML_Q8_0 = 8,
    R1_GGML_Q4_K = 12,
    R1_GGML_Q6_K = 14,
    R1_GGML_BF16 = 30
};

#define R1_GGUF_MAX_DIMS 4

struct r1_gguf_kv {
    char *key;
    enum r1_gguf_type type;     /* R1_GGUF_ARRAY for arrays */
    enum r1_gguf_type arr_type; /* element type of an array */
    uint64_t n;                 /* elements of an array; 1 for a scalar */
    union {
        uint64_t u;
        int64_t i;
        double f;
    } v;            /* scalar numbers and bools (as the file's type allows) */
    char *str;      /* a STRING value (NUL-terminated copy) */
    void *arr;      /* numeric array: n elements in native type, aligned */
    char **strs;    /* string array: n NUL-terminated copies */
    uint64_t *lens; /* string array: byte lengths (a string may hold NUL) */
};

struct r1_gguf_tensor {
    char *name;
    enum r1_ggml_type type;
    int ndim;
    int64_t ne[R1_GGUF_MAX_DIMS]; /* innermost first; unused dims are 1 */
    uint64_t offset;              /* from the start of the data region */
    uint64_t nbytes;
    const void *data; /* into the mapping */
};

struct r1_gguf {
    char *path;
    uint32_t version;
    uint64_t alignment, data_start, file_size;
    int n_kv;
    struct r1_gguf_kv *kv; /* in file order */
    int n_tensors;
    struct r1_gguf_tensor *tensors; /* in file order */
    const uint8_t *map;             /* the whole file, read-only */
};

/* Opens, maps and validates path.  R1_EIO when it cannot be read, R1_EFORMAT naming
 * the file and the key or tensor when it is malformed or uses a type r1 cannot read. */
int r1_gguf_open(struct r1_gguf **out, const char *path);
void r1_gguf_close(struct r1_gguf *g);

/* ---- metadata -------------------------------------------------------------
 * Each getter returns 0, or R1_EFORMAT naming the file and the key when the key is
 * missing or its type does not fit (use r1_gguf_has for optional keys).  Integers
 * of any width convert when the value fits; floats accept F32 and F64. */
const struct r1_gguf_kv *r1_gguf_find_kv(const struct r1_gguf *g, const char *key);
bool r1_gguf_has(const struct r1_gguf *g, const char *key);
int r1_gguf_get_u32(const struct r1_gguf *g, const char *key, uint32_t *out);
int r1_gguf_get_i32(const struct r1_gguf *g, const char *key, int32_t *out);
int r1_gguf_get_u64(const struct r1_gguf *g, const char *key, uint64_t *out);
int r1_gguf_get_f32(const struct r1_gguf *g, const char *key, float *out);
int r1_gguf_get_bool(const struct r1_gguf *g, const char *key, bool *out);
/* *out borrowed from g (NUL-terminated). */
int r1_gguf_get_str(const struct r1_gguf *g, const char *key, const char **out);

/* An array value, borrowed from g. */
struct r1_gguf_array {
    enum r1_gguf_type type; /* element type */
    uint64_t n;
    const void *data;        /* numeric: n elements of type (int32_t * for I32, ...) */
    const char *const *strs; /* STRING: n NUL-terminated strings */
    const uint64_t *lens;    /* STRING: their byte lengths */
};
/* want: the element type required, or R1_GGUF_TYPE_COUNT for any. */
int r1_gguf_get_array(const struct r1_gguf *g, const char *key, enum r1_gguf_type want,
                      struct r1_gguf_array *out);
/* Shorthands: a string array (tokenizer.ggml.tokens, .merges) and an integer array of
 * any width read as int32 (tokenizer.ggml.token_type): *out malloc'd, caller frees. */
int r1_gguf_get_strs(const struct r1_gguf *g, const char *key, const char *const **strs,
                     uint64_t *n);
/* A token id key such as tokenizer.ggml.bos_token_id: *out -1 when the key is absent or
 * the value does not fit an int32; R1_EFORMAT naming the key when it is not an integer. */
int r1_gguf_get_token_id(const struct r1_gguf *g, const char *key, int32_t *out);
int r1_gguf_get_i32s(const struct r1_gguf *g, const char *key, int32_t **out, uint64_t *n);

/* ---- tensors --------------------------------------------------------------- */
const struct r1_gguf_tensor *r1_gguf_find_tensor(const struct r1_gguf *g, const char *name);
int64_t r1_gguf_tensor_numel(const struct r1_gguf_tensor *t);
/* "Q4_K", "F32", ...; "type N" for a number r1 does not know. */
const char *r1_ggml_type_name(int type);
/* Elements per block and bytes per block of a type r1 reads; 0 for others. */
int r1_ggml_block_size(int type);
size_t r1_ggml_block_bytes(int type);
/* Dequantizes n elements (a multiple of the block size) of type from src to dst. */
int r1_ggml_dequantize(int type, const void *src, float *dst, int64_t n);
/* The whole tensor t of g to f32: dst holds r1_gguf_tensor_numel(t) floats. */
int r1_gguf_read_f32(const struct r1_gguf *g, const struct r1_gguf_tensor *t, float *dst);

/* ---- models (core/gguf-model.c) --------------------------------------------
 * general.architecture "llama" or "qwen2": the config from the {arch}.* keys (vocab
 * from {arch}.vocab_size or the token list; bos/eos/pad from tokenizer.ggml.*; tied
 * when output.weight is absent; max_seq_len = context_length), every tensor mapped to
 * its Hugging Face name and shape-checked, dequantized to f32, and llama's attn_q /
 * attn_k rows un-permuted (llama.cpp's converter interleaves each head's rotary pairs;
 * r1 rotates halves as transformers does).  R1_EFORMAT naming the file and the key or
 * tensor on a mismatch or an unsupported feature. */
int r1_gguf_model_config(struct r1_model_config *out, const struct r1_gguf *g);
/* Fills m (created from r1_gguf_model_config of g) with g's weights. */
int r1_gguf_load_weights(struct r1_model *m, const struct r1_gguf *g);
int r1_gguf_load_model(struct r1_model **out, struct r1_backend *be, const char *path);
/* The GGUF name of a Hugging Face parameter name (model.layers.3.mlp.up_proj.weight →
 * blk.3.ffn_up.weight) into buf; R1_EINVAL when it has none. */
int r1_gguf_name_from_hf(char *buf, size_t cap, const char *hf_name);

/* ---- tokenizer (core/tokenizer-gguf.c) --------------------------------------
 * The byte-level BPE tokenizer of tokenizer.ggml.* ("gpt2" model): tokens, merges,
 * token_type (control and user-defined tokens matched before BPE), bos/eos/padding ids,
 * the pre-tokenizer named by tokenizer.ggml.pre, and tokenizer.chat_template.
 * R1_EFORMAT naming the file for another tokenizer model or a bad table. */
struct r1_tokenizer;
int r1_tokenizer_gguf_load(struct r1_tokenizer **out, const struct r1_gguf *g);

#endif
