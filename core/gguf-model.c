/* gguf-model.c - a decoder model from a GGUF file (general.architecture llama or qwen2).
 *
 * Config from the {arch}.* keys, tensors by the name map below (GGUF → Hugging Face),
 * each dequantized to f32 and checked against the shape the config implies.
 *
 * Q/K rows: llama.cpp's convert_hf_to_gguf stores a llama model's attn_q / attn_k
 * rows permuted so that each head's rotary pairs are adjacent (GGML's interleaved
 * RoPE): HF row h·D + s·D/2 + i (s ∈ {0,1}, i < D/2) is stored at GGUF row
 * h·D + 2i + s.  r1 rotates halves (transformers' rotate_half), so rows (and the q/k
 * biases, permuted the same way) are moved back.  qwen2 files use NEOX RoPE, which
 * is rotate_half already: nothing is permuted. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/err.h"
#include "core/gguf.h"

/* HF suffix after model.layers.N. ↔ GGUF suffix after blk.N. */
static const char *const layer_map[][2] = {
    {"self_attn.q_proj.weight", "attn_q.weight"},
    {"self_attn.k_proj.weight", "attn_k.weight"},
    {"self_attn.v_proj.weight", "attn_v.weight"},
    {"self_attn.o_proj.weight", "attn_output.weight"},
    {"self_attn.q_proj.bias", "attn_q.bias"},
    {"self_attn.k_proj.bias", "attn_k.bias"},
    {"self_attn.v_proj.bias", "attn_v.bias"},
    {"mlp.gate_proj.weight", "ffn_gate.weight"},
    {"mlp.up_proj.weight", "ffn_up.weight"},
    {"mlp.down_proj.weight", "ffn_down.weight"},
    {"input_layernorm.weight", "attn_norm.weight"},
    {"post_attention_layernorm.weight", "ffn_norm.weight"},
};
static const char *const top_map[][2] = {
    {"model.embed_tokens.weight", "token_embd.weight"},
    {"model.norm.weight", "output_norm.weight"},
    {"lm_head.weight", "output.weight"},
};
#define N_LAYER_MAP (sizeof(layer_map) / sizeof(layer_map[0]))
#define N_TOP_MAP (sizeof(top_map) / sizeof(top_map[0]))

int r1_gguf_name_from_hf(char *buf, size_t cap, const char *hf)
{
    for (size_t i = 0; i < N_TOP_MAP; i++)
        if (strcmp(hf, top_map[i][0]) == 0) {
            snprintf(buf, cap, "%s", top_map[i][1]);
            return 0;
        }
    int layer, used = 0;
    if (sscanf(hf, "model.layers.%d.%n", &layer, &used) == 1 && used > 0)
        for (size_t i = 0; i < N_LAYER_MAP; i++)
            if (strcmp(hf + used, layer_map[i][0]) == 0) {
                snprintf(buf, cap, "blk.%d.%s", layer, layer_map[i][1]);
                return 0;
            }
    return r1_err_set(R1_EINVAL, "tensor '%s' has no GGUF name", hf);
}

/* {arch}.<suffix> as a u32 into *out; optional keys leave *out unchanged when absent. */
static int arch_u32(const struct r1_gguf *g, const char *arch, const char *suffix, int *out,
                    bool required)
{
    char key[128];
    snprintf(key, sizeof(key), "%s.%s", arch, suffix);
    if (!required && !r1_gguf_has(g, key))
        return 0;
    uint32_t v;
    int rc = r1_gguf_get_u32(g, key, &v);
    if (rc)
        return rc;
    if (v > (1u << 30))
        return r1_err_set(R1_EFORMAT, "%s: metadata key '%s' = %u is out of range", g->path, key,
                          v);
    *out = (int)v;
    return 0;
}

static int arch_f32(const struct r1_gguf *g, const char *arch, const char *suffix, float *out)
{
    char key[128];
    snprintf(key, sizeof(key), "%s.%s", arch, suffix);
    return r1_gguf_has(g, key) ? r1_gguf_get_f32(g, key, out) : 0;
}

int r1_gguf_get_token_id(const struct r1_gguf *g, const char *key, int32_t *out)
{
    *out = -1;
    if (!r1_gguf_has(g, key))
        return 0;
    uint32_t v;
    int rc = r1_gguf_get_u32(g, key, &v);
    if (!rc)
        *out = v > INT32_MAX ? -1 : (int32_t)v;
    return rc;
}

int r1_gguf_model_config(struct r1_model_config *c, const struct r1_gguf *g)
{
    memset(c, 0, sizeof(*c));
    const char *arch;
    int rc = r1_gguf_get_str(g, "general.architecture", &arch);
    if (rc)
        return rc;
    if (strcmp(arch, "llama") == 0)
        c->arch = R1_ARCH_LLAMA;
    else if (strcmp(arch, "qwen2") == 0)
        c->arch = R1_ARCH_QWEN2;
    else
        return r1_err_set(R1_EFORMAT,
                          "%s: general.architecture is '%s'; r1 reads llama and "
                          "qwen2 GGUF models",
                          g->path, arch);
    c->rms_eps = 1e-5f;
    c->rope_theta = 10000.0f;
    c->max_seq_len = 2048;
    int rope_dims = 0;
    if ((rc = arch_u32(g, arch, "block_count", &c->n_layers, true)) ||
        (rc = arch_u32(g, arch, "embedding_length", &c->hidden_size, true)) ||
        (rc = arch_u32(g, arch, "feed_forward_length", &c->ffn_size, true)) ||
        (rc = arch_u32(g, arch, "attention.head_count", &c->n_heads, true)) ||
        (rc = arch_u32(g, arch, "attention.head_count_kv", &c->n_kv_heads, false)) ||
        (rc = arch_u32(g, arch, "attention.key_length", &c->head_dim, false)) ||
        (rc = arch_u32(g, arch, "rope.dimension_count", &rope_dims, false)) ||
        (rc = arch_u32(g, arch, "context_length", &c->max_seq_len, false)) ||
        (rc = arch_u32(g, arch, "vocab_size", &c->vocab_size, false)) ||
        (rc = arch_f32(g, arch, "rope.freq_base", &c->rope_theta)) ||
        (rc = arch_f32(g, arch, "attention.layer_norm_rms_epsilon", &c->rms_eps)))
        return rc;
    if (c->n_kv_heads == 0)
        c->n_kv_heads = c->n_heads;
    /* RoPE tables cover max_seq_len positions (8 bytes per position and rotary pair); a
     * KV cache is sized by its caller, so the full context costs little */
    if (c->max_seq_len > (1 << 20))
        c->max_seq_len = 1 << 20;
    if (c->head_dim == 0 && c->n_heads > 0)
        c->head_dim = c->hidden_size / c->n_heads;
    if (rope_dims != 0 && rope_dims != c->head_dim)
        return r1_err_set(R1_EFORMAT,
                          "%s: %s.rope.dimension_count is %d but heads have %d "
                          "dimensions; r1 rotates whole heads only",
                          g->path, arch, rope_dims, c->head_dim);
    char key[128];
    snprintf(key, sizeof(key), "%s.rope.scaling.type", arch);
    const char *scaling;
    if (r1_gguf_has(g, key) && !r1_gguf_get_str(g, key, &scaling) && strcmp(scaling, "none"))
        return r1_err_set(R1_EFORMAT, "%s: %s is '%s'; r1 supports plain RoPE only", g->path, key,
                          scaling);
    if (c->vocab_size == 0) {
        struct r1_gguf_array toks;
        if (r1_gguf_has(g, "tokenizer.ggml.tokens")) {
            if ((rc = r1_gguf_get_array(g, "tokenizer.ggml.tokens", R1_GGUF_STRING, &toks)))
                return rc;
            c->vocab_size = toks.n > (1u << 30) ? 0 : (int)toks.n;
        } else {
            const struct r1_gguf_tensor *e = r1_gguf_find_tensor(g, "token_embd.weight");
            c->vocab_size = e ? (int)e->ne[1] : 0;
        }
    }
    if ((rc = r1_gguf_get_token_id(g, "tokenizer.ggml.bos_token_id", &c->bos_id)) ||
        (rc = r1_gguf_get_token_id(g, "tokenizer.ggml.eos_token_id", &c->eos_id)) ||
        (rc = r1_gguf_get_token_id(g, "tokenizer.ggml.padding_token_id", &c->pad_id)))
        return rc;
    c->tie_embeddings = r1_gguf_find_tensor(g, "output.weight") == NULL;
    c->qkv_bias = r1_gguf_find_tensor(g, "blk.0.attn_q.bias") != NULL;
    if (c->arch == R1_ARCH_QWEN2 && !c->qkv_bias)
        return r1_err_set(R1_EFORMAT,
                          "%s: a qwen2 model without blk.0.attn_q.bias; the file "
                          "is incomplete",
                          g->path);
    c->num_labels = 0;
    if ((rc = r1_model_config_check(c)))
        return r1_err_wrap(R1_EFORMAT, "%s: metadata", g->path);
    return 0;
}

/* Moves rows of w (rows, cols) from GGUF's interleaved order back to halves, per head. */
static void unpermute_rows(float *w, int64_t rows, int64_t cols, int D, float *tmp)
{
    int half = D / 2;
    for (int64_t h = 0; h < rows / D; h++) {
        float *blk = w + h * D * cols;
        memcpy(tmp, blk, sizeof(float) * (size_t)(D * cols));
        for (int s = 0; s < 2; s++)
            for (int i = 0; i < half; i++)
                memcpy(blk + (s * half + i) * cols, tmp + (2 * i + s) * cols,
                       sizeof(float) * (size_t)cols);
    }
}

static int load_tensor(const struct r1_gguf *g, const struct r1_param *p, float *dst, bool permute,
                       int D, float *tmp)
{
    char gname[128];
    int rc = r1_gguf_name_from_hf(gname, sizeof(gname), p->name);
    if (rc)
        return r1_err_wrap(rc, "%s", g->path);
    const struct r1_gguf_tensor *t = r1_gguf_find_tensor(g, gname);
    if (!t)
        return r1_err_set(R1_EFORMAT,
                          "%s: tensor '%s' (%s) is missing; the metadata promise "
                          "a model the tensors do not hold",
                          g->path, gname, p->name);
    /* HF (out, in) is GGUF ne = {in, out} */
    bool same = t->ndim == p->w.ndim;
    for (int d = 0; same && d < p->w.ndim; d++)
        same = t->ne[d] == p->w.shape[p->w.ndim - 1 - d];
    if (!same) {
        char want[64], got[64];
        if (p->w.ndim == 1)
            snprintf(want, sizeof(want), "[%lld]", (long long)p->w.shape[0]);
        else
            snprintf(want, sizeof(want), "[%lld, %lld]", (long long)p->w.shape[1],
                     (long long)p->w.shape[0]);
        int k = snprintf(got, sizeof(got), "[");
        for (int d = 0; d < t->ndim && k < (int)sizeof(got); d++)
            k += snprintf(got + k, sizeof(got) - (size_t)k, "%s%lld", d ? ", " : "",
                          (long long)t->ne[d]);
        snprintf(got + (k < (int)sizeof(got) ? k : (int)sizeof(got) - 1),
                 sizeof(got) - (size_t)(k < (int)sizeof(got) ? k : (int)sizeof(got) - 1), "]");
        return r1_err_set(R1_EFORMAT, "%s: tensor '%s' has GGUF dims %s; the metadata imply %s",
                          g->path, gname, got, want);
    }
    if ((rc = r1_gguf_read_f32(g, t, dst)))
        return rc;
    if (permute) {
        int64_t rows = p->w.shape[0], cols = p->w.ndim == 2 ? p->w.shape[1] : 1;
        unpermute_rows(dst, rows, cols, D, tmp);
    }
    return 0;
}

int r1_gguf_load_weights(struct r1_model *m, const struct r1_gguf *g)
{
    const struct r1_model_config *c = &m->cfg;
    float *host = calloc(1, m->params.cap);
    /* scratch for one head's rows during the un-permutation */
    float *tmp = malloc(sizeof(float) * (size_t)c->head_dim * (size_t)c->hidden_size);
    int rc = 0;
    if (!host || !tmp) {
        rc = r1_err_set(R1_ENOMEM, "%s: out of host memory for %zu bytes of weights", g->path,
                        m->params.cap);
        goto out;
    }
    /* every GGUF tensor must be one r1 reads: an extra one (rope_freqs, ...) means a
     * feature r1 does not implement */
    for (int i = 0; i < g->n_tensors; i++) {
        bool known = false;
        for (int j = 0; j < m->n_tensors && !known; j++) {
            char gname[128];
            known = !r1_gguf_name_from_hf(gname, sizeof(gname), m->tensors[j].name) &&
                    strcmp(gname, g->tensors[i].name) == 0;
        }
        if (!known) {
            rc = r1_err_set(R1_EFORMAT,
                            "%s: tensor '%s' is not part of a %s model r1 builds "
                            "from the metadata; r1 cannot use this model",
                            g->path, g->tensors[i].name,
                            c->arch == R1_ARCH_QWEN2 ? "qwen2" : "llama");
            goto out;
        }
    }
    for (int i = 0; i < m->n_tensors; i++) {
        const struct r1_param *p = &m->tensors[i];
        if (strcmp(p->name, "score.weight") == 0)
            continue;
        bool qk = strstr(p->name, ".q_proj.") || strstr(p->name, ".k_proj.");
        bool permute = qk && c->arch == R1_ARCH_LLAMA;
        float *dst = host + ((float *)p->w.data - m->param_mem);
        if ((rc = load_tensor(g, p, dst, permute, c->head_dim, tmp)))
            goto out;
    }
    m->be->ops->upload(m->be->ctx, m->param_mem, host, m->params.cap);
    r1_model_params_changed(m);
out:
    free(tmp);
    free(host);
    return rc;
}

int r1_gguf_load_model(struct r1_model **out, struct r1_backend *be, const char *path)
{
    *out = NULL;
    struct r1_gguf *g = NULL;
    struct r1_model *m = NULL;
    struct r1_model_config c;
    int rc;
    if ((rc = r1_gguf_open(&g, path)) || (rc = r1_gguf_model_config(&c, g)) ||
        (rc = r1_model_create(&m, &c, be)) || (rc = r1_gguf_load_weights(m, g))) {
        r1_model_free(m);
        m = NULL;
    }
    r1_gguf_close(g);
    *out = m;
    return rc;
}
