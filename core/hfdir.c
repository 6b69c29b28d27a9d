/* hfdir.c - Hugging Face model directories (see hfdir.h).
 *
 * A causal LM is written as <Arch>ForCausalLM; a model with a score head
 * (num_labels 1) as <Arch>ForSequenceClassification with "num_labels": 1 and a
 * pad_token_id (transformers scores the last token that is not padding, so it needs
 * one to score a batch of several rows). */
#include "core/hfdir.h"

#include <errno.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "core/err.h"
#include "core/file.h"
#include "core/safetensors.h"

static int json_int(json_t *o, const char *key, int *out, int required, const char *path)
{
    json_t *v = json_object_get(o, key);
    if (!v || json_is_null(v)) {
        if (required)
            return r1_err_set(R1_EFORMAT, "%s: key '%s' is missing; add it (an integer)", path,
                              key);
        return 0;
    }
    if (json_is_array(v) && json_array_size(v) > 0) /* eos_token_id may be a list */
        v = json_array_get(v, 0);
    if (!json_is_integer(v))
        return r1_err_set(R1_EFORMAT, "%s: key '%s' must be an integer", path, key);
    json_int_t x = json_integer_value(v);
    if (x < -1 || x > (1 << 30))
        return r1_err_set(R1_EFORMAT, "%s: key '%s' = %lld is out of range", path, key,
                          (long long)x);
    *out = (int)x;
    return 0;
}

static int json_float(json_t *o, const char *key, float *out, const char *path)
{
    json_t *v = json_object_get(o, key);
    if (!v || json_is_null(v))
        return 0;
    if (!json_is_number(v))
        return r1_err_set(R1_EFORMAT, "%s: key '%s' must be a number", path, key);
    *out = (float)json_number_value(v);
    return 0;
}

int r1_model_config_load_json(struct r1_model_config *c, const char *path)
{
    json_error_t jerr;
    json_t *root = json_load_file(path, 0, &jerr);
    if (!root) {
        if (access(path, R_OK) != 0)
            return r1_err_set(R1_EINVAL, "%s: cannot read (%s); point to a model directory "
                              "with config.json and model.safetensors", path, strerror(errno));
        return r1_err_set(R1_EFORMAT, "%s:%d:%d: bad JSON: %s", path, jerr.line, jerr.column,
                          jerr.text);
    }
    int rc = 0;
    memset(c, 0, sizeof(*c));
    if (!json_is_object(root)) {
        rc = r1_err_set(R1_EFORMAT, "%s: expected a JSON object", path);
        goto out;
    }
    const char *mt = json_string_value(json_object_get(root, "model_type"));
    if (!mt) {
        rc = r1_err_set(R1_EFORMAT, "%s: key 'model_type' is missing", path);
        goto out;
    }
    if (strcmp(mt, "llama") == 0)
        c->arch = R1_ARCH_LLAMA;
    else if (strcmp(mt, "qwen2") == 0)
        c->arch = R1_ARCH_QWEN2;
    else if (strcmp(mt, "mistral") == 0)
        c->arch = R1_ARCH_MISTRAL;
    else {
        rc = r1_err_set(R1_EFORMAT, "%s: model_type '%s' is not supported; r1 reads llama, "
                        "qwen2 and mistral", path, mt);
        goto out;
    }
    c->rms_eps = 1e-6f;
    c->rope_theta = 10000.0f;
    c->bos_id = c->eos_id = c->pad_id = -1;
    c->num_labels = 0;
    c->head_dim = 0;
    c->n_kv_heads = 0;
    c->max_seq_len = 2048;
    if ((rc = json_int(root, "vocab_size", &c->vocab_size, 1, path)) ||
        (rc = json_int(root, "hidden_size", &c->hidden_size, 1, path)) ||
        (rc = json_int(root, "num_hidden_layers", &c->n_layers, 1, path)) ||
        (rc = json_int(root, "num_attention_heads", &c->n_heads, 1, path)) ||
        (rc = json_int(root, "num_key_value_heads", &c->n_kv_heads, 0, path)) ||
        (rc = json_int(root, "head_dim", &c->head_dim, 0, path)) ||
        (rc = json_int(root, "intermediate_size", &c->ffn_size, 1, path)) ||
        (rc = json_int(root, "max_position_embeddings", &c->max_seq_len, 0, path)) ||
        (rc = json_int(root, "bos_token_id", &c->bos_id, 0, path)) ||
        (rc = json_int(root, "eos_token_id", &c->eos_id, 0, path)) ||
        (rc = json_int(root, "pad_token_id", &c->pad_id, 0, path)) ||
        (rc = json_float(root, "rms_norm_eps", &c->rms_eps, path)) ||
        (rc = json_float(root, "rope_theta", &c->rope_theta, path)))
        goto out;
    if (c->n_kv_heads == 0)
        c->n_kv_heads = c->n_heads;
    if (c->head_dim == 0 && c->n_heads > 0)
        c->head_dim = c->hidden_size / c->n_heads;
    json_t *tie = json_object_get(root, "tie_word_embeddings");
    c->tie_embeddings = tie && json_is_true(tie); /* transformers' default is false */
    json_t *bias = json_object_get(root, "attention_bias");
    c->qkv_bias = c->arch == R1_ARCH_QWEN2 ? true : (bias && json_is_true(bias));
    /* a sequence-classification architecture is a reward model: a score head */
    json_t *archs = json_object_get(root, "architectures");
    const char *arch0 = json_string_value(json_array_get(archs, 0));
    if (arch0 && strstr(arch0, "ForSequenceClassification")) {
        int labels = 2; /* transformers' default when num_labels and id2label are absent */
        json_t *id2label = json_object_get(root, "id2label");
        if (json_is_object(id2label))
            labels = (int)json_object_size(id2label);
        if ((rc = json_int(root, "num_labels", &labels, 0, path)))
            goto out;
        if (labels != 1) {
            rc = r1_err_set(R1_EFORMAT, "%s: %s with num_labels %d; r1 reads reward models with "
                            "one score (num_labels 1)", path, arch0, labels);
            goto out;
        }
        c->num_labels = 1;
    }
    /* Mistral / Qwen2 sliding-window attention: r1 attends to the whole context, which
     * is the same thing only when the window is off or covers the context */
    json_t *sw = json_object_get(root, "sliding_window"), *use_sw =
        json_object_get(root, "use_sliding_window");
    if (json_is_integer(sw) && json_integer_value(sw) < c->max_seq_len &&
        !(use_sw && json_is_false(use_sw))) {
        rc = r1_err_set(R1_EFORMAT, "%s: sliding_window %lld is shorter than the context (%d); "
                        "r1 has no sliding-window attention", path,
                        (long long)json_integer_value(sw), c->max_seq_len);
        goto out;
    }
    json_t *rs = json_object_get(root, "rope_scaling");
    if (rs && !json_is_null(rs)) {
        rc = r1_err_set(R1_EFORMAT, "%s: rope_scaling is set; r1 supports plain RoPE only", path);
        goto out;
    }
    rc = r1_model_config_check(c);
    if (rc)
        r1_err_wrap(rc, "%s", path);
out:
    json_decref(root);
    return rc;
}

int r1_model_config_save_json(const struct r1_model_config *c, const char *path,
                              enum r1_dtype dtype)
{
    json_t *o = json_object();
    int qwen = c->arch == R1_ARCH_QWEN2, mistral = c->arch == R1_ARCH_MISTRAL;
    char arch[64];
    snprintf(arch, sizeof(arch), "%sFor%s", qwen ? "Qwen2" : mistral ? "Mistral" : "Llama",
             c->num_labels > 0 ? "SequenceClassification" : "CausalLM");
    json_object_set_new(o, "architectures", json_pack("[s]", arch));
    json_object_set_new(o, "model_type", json_string(qwen ? "qwen2" : mistral ? "mistral" : "llama"));
    json_object_set_new(o, "vocab_size", json_integer(c->vocab_size));
    json_object_set_new(o, "hidden_size", json_integer(c->hidden_size));
    json_object_set_new(o, "intermediate_size", json_integer(c->ffn_size));
    json_object_set_new(o, "num_hidden_layers", json_integer(c->n_layers));
    json_object_set_new(o, "num_attention_heads", json_integer(c->n_heads));
    json_object_set_new(o, "num_key_value_heads", json_integer(c->n_kv_heads));
    json_object_set_new(o, "head_dim", json_integer(c->head_dim));
    json_object_set_new(o, "max_position_embeddings", json_integer(c->max_seq_len));
    json_object_set_new(o, "rms_norm_eps", json_real(c->rms_eps));
    json_object_set_new(o, "rope_theta", json_real(c->rope_theta));
    json_object_set_new(o, "tie_word_embeddings", json_boolean(c->tie_embeddings));
    if (!qwen)
        json_object_set_new(o, "attention_bias", json_boolean(c->qkv_bias));
    json_object_set_new(o, "hidden_act", json_string("silu"));
    json_object_set_new(o, "torch_dtype", json_string(dtype == R1_BF16   ? "bfloat16"
                                                       : dtype == R1_F16 ? "float16"
                                                                         : "float32"));
    if (c->bos_id >= 0)
        json_object_set_new(o, "bos_token_id", json_integer(c->bos_id));
    if (c->eos_id >= 0)
        json_object_set_new(o, "eos_token_id", json_integer(c->eos_id));
    /* a score model needs a pad id; without its own, the EOS id is the usual stand-in */
    int32_t pad = c->pad_id >= 0 ? c->pad_id : c->num_labels > 0 ? c->eos_id : -1;
    if (pad >= 0)
        json_object_set_new(o, "pad_token_id", json_integer(pad));
    if (c->num_labels > 0)
        json_object_set_new(o, "num_labels", json_integer(c->num_labels));
    if (c->vocab_size == 264 && c->eos_id == 256)
        json_object_set_new(o, "r1_tokenizer", json_string("bytes"));
    int rc = r1_file_write_json(path, o, JSON_INDENT(2) | JSON_PRESERVE_ORDER |
                                                   JSON_REAL_PRECISION(9));
    json_decref(o);
    return rc;
}

int r1_model_save_safetensors(const struct r1_model *m, const char *path, enum r1_dtype dtype)
{
    if (dtype != R1_F32 && dtype != R1_BF16 && dtype != R1_F16)
        return r1_err_set(R1_EINVAL, "%s: weights can be saved as F32, BF16 or F16", path);
    struct r1_st_writer *w = NULL;
    float *host = malloc(m->params.cap);
    if (!host)
        return r1_err_set(R1_ENOMEM, "%s: out of host memory", path);
    m->be->ops->download(m->be->ctx, host, m->param_mem, m->params.cap);
    int rc;
    if ((rc = r1_st_writer_create(&w)) || (rc = r1_st_writer_meta(w, "format", "pt")))
        goto out;
    for (int i = 0; i < m->n_tensors; i++) {
        const struct r1_param *p = &m->tensors[i];
        const float *src = host + ((float *)p->w.data - m->param_mem);
        if ((rc = r1_st_writer_add_f32(w, p->name, dtype, p->w.ndim, p->w.shape, src)))
            goto out;
    }
    rc = r1_st_writer_write(w, path);
out:
    r1_st_writer_free(w);
    free(host);
    return rc;
}

int r1_hfdir_save(const struct r1_model *m, const char *dir, enum r1_dtype dtype)
{
    char path[4096];
    if (dtype != R1_F32 && dtype != R1_BF16 && dtype != R1_F16)
        return r1_err_set(R1_EINVAL, "%s: weights can be saved as F32, BF16 or F16", dir);
    if (mkdir(dir, 0777) != 0 && errno != EEXIST)
        return r1_err_set(R1_EIO, "%s: cannot create directory (%s)", dir, strerror(errno));
    snprintf(path, sizeof(path), "%s/config.json", dir);
    int rc = r1_model_config_save_json(&m->cfg, path, dtype);
    if (rc)
        return rc;
    snprintf(path, sizeof(path), "%s/model.safetensors", dir);
    return r1_model_save_safetensors(m, path, dtype);
}

/* Loads every parameter of m from files[0..n): from files[0] when weight_map is NULL,
 * else from the file weight_map names for it (what: the file or index, for messages). */
static int load_params(struct r1_model *m, const char *what, struct r1_st_file **files,
                       const char *const *names, int n, json_t *weight_map)
{
    int rc = 0;
    float *host = calloc(1, m->params.cap);
    if (!host)
        return r1_err_set(R1_ENOMEM, "%s: out of host memory", what);
    for (int i = 0; i < m->n_tensors; i++) {
        const struct r1_param *p = &m->tensors[i];
        struct r1_st_file *f = files[0];
        if (weight_map) {
            const char *fname = json_string_value(json_object_get(weight_map, p->name));
            f = NULL;
            for (int k = 0; fname && k < n && !f; k++)
                if (strcmp(names[k], fname) == 0)
                    f = files[k];
            if (!f) {
                rc = r1_err_set(R1_EFORMAT, "%s: weight_map has no file for tensor '%s'; the "
                                "weights do not match config.json", what, p->name);
                goto out;
            }
        }
        const struct r1_st_entry *e = r1_st_find(f, p->name);
        if (!e) {
            rc = r1_err_set(R1_EFORMAT, "%s: tensor '%s' is missing; the weights do not match "
                            "config.json", f->path, p->name);
            goto out;
        }
        int same = e->ndim == p->w.ndim;
        for (int d = 0; same && d < e->ndim; d++)
            same = e->shape[d] == p->w.shape[d];
        if (!same) {
            rc = r1_err_set(R1_EFORMAT, "%s: tensor '%s' has a shape that does not match "
                            "config.json", f->path, p->name);
            goto out;
        }
        float *dst = host + ((float *)p->w.data - m->param_mem);
        if ((rc = r1_st_read_f32(f, e, dst, r1_tensor_numel(&p->w))))
            goto out;
    }
    m->be->ops->upload(m->be->ctx, m->param_mem, host, m->params.cap);
    r1_model_params_changed(m);
out:
    free(host);
    return rc;
}

int r1_model_load_safetensors(struct r1_model *m, const char *path)
{
    struct r1_st_file *f = NULL;
    int rc = r1_st_open(&f, path);
    if (rc)
        return rc;
    rc = load_params(m, path, &f, &path, 1, NULL);
    r1_st_close(f);
    return rc;
}

int r1_model_load_safetensors_index(struct r1_model *m, const char *index_path)
{
    json_error_t jerr;
    json_t *root = json_load_file(index_path, 0, &jerr);
    if (!root)
        return r1_err_set(R1_EFORMAT, "%s:%d: bad JSON: %s", index_path, jerr.line, jerr.text);
    json_t *wm = json_object_get(root, "weight_map");
    int rc = 0, n = 0;
    size_t cap = json_is_object(wm) ? json_object_size(wm) : 0;
    struct r1_st_file **files = calloc(cap + 1, sizeof(*files));
    const char **names = calloc(cap + 1, sizeof(*names));
    char dir[4096], path[8192];
    snprintf(dir, sizeof(dir), "%s", index_path);
    char *slash = strrchr(dir, '/');
    if (slash)
        slash[1] = '\0';
    else
        dir[0] = '\0';
    if (!files || !names) {
        rc = r1_err_set(R1_ENOMEM, "%s: out of memory", index_path);
        goto out;
    }
    if (!json_is_object(wm) || cap == 0) {
        rc = r1_err_set(R1_EFORMAT, "%s: no \"weight_map\" object; not a safetensors index",
                        index_path);
        goto out;
    }
    const char *key;
    json_t *val;
    json_object_foreach(wm, key, val) {
        const char *fname = json_string_value(val);
        if (!fname || !*fname || strchr(fname, '/') || strcmp(fname, "..") == 0) {
            rc = r1_err_set(R1_EFORMAT, "%s: weight_map entry '%s' must name a file in the same "
                            "directory", index_path, key);
            goto out;
        }
        int k = 0;
        while (k < n && strcmp(names[k], fname) != 0)
            k++;
        if (k < n)
            continue;
        snprintf(path, sizeof(path), "%s%s", dir, fname);
        names[n] = fname;
        if ((rc = r1_st_open(&files[n], path)))
            goto out;
        n++;
    }
    rc = load_params(m, index_path, files, names, n, wm);
out:
    for (int k = 0; k < n; k++)
        r1_st_close(files[k]);
    free(files);
    free(names);
    json_decref(root);
    return rc;
}

int r1_hfdir_load(struct r1_model **out, struct r1_backend *be, const char *dir)
{
    char path[4096];
    struct r1_model_config c;
    snprintf(path, sizeof(path), "%s/config.json", dir);
    int rc = r1_model_config_load_json(&c, path);
    if (rc)
        return rc;
    struct r1_model *m = NULL;
    if ((rc = r1_model_create(&m, &c, be)))
        return rc;
    snprintf(path, sizeof(path), "%s/model.safetensors", dir);
    if (access(path, F_OK) == 0) {
        rc = r1_model_load_safetensors(m, path);
    } else {
        snprintf(path, sizeof(path), "%s/model.safetensors.index.json", dir);
        if (access(path, F_OK) == 0)
            rc = r1_model_load_safetensors_index(m, path);
        else
            rc = r1_err_set(R1_EFORMAT, "%s: neither model.safetensors nor "
                            "model.safetensors.index.json is there; not a model directory",
                            dir);
    }
    if (rc) {
        r1_model_free(m);
        return rc;
    }
    *out = m;
    return 0;
}

int r1_hfdir_load_tokenizer(struct r1_tokenizer **out, const char *dir)
{
    char path[4096];
    json_error_t jerr;
    snprintf(path, sizeof(path), "%s/config.json", dir);
    json_t *root = json_load_file(path, 0, &jerr);
    if (!root)
        return r1_err_set(R1_EFORMAT, "%s: cannot read (%s)", path, jerr.text);
    const char *kind = json_string_value(json_object_get(root, "r1_tokenizer"));
    int rc;
    if (kind && strcmp(kind, "bytes") == 0) {
        rc = r1_tokenizer_bytes_create(out);
    } else {
        char cfg[4200];
        snprintf(path, sizeof(path), "%s/tokenizer.json", dir);
        snprintf(cfg, sizeof(cfg), "%s/tokenizer_config.json", dir);
        if (access(path, F_OK) == 0)
            rc = r1_tokenizer_json_load(out, path, cfg);
        else
            rc = r1_err_set(R1_EFORMAT, "%s: no tokenizer: the directory has no tokenizer.json "
                            "and config.json does not name r1's byte tokenizer; copy the "
                            "model's tokenizer files into it", dir);
    }
    json_decref(root);
    return rc;
}
