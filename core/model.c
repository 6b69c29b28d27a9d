/* model.c - decoder forward and backward on a backend (see model.h).
 *
 * Shapes: B batch rows, T positions, N = B·T tokens, C hidden, H query heads,
 * KVH key/value heads, D head dim, F FFN size, V vocab.  Activations are kept
 * per layer for the backward; backward scratch is shared by all layers.
 * Gradient rule (backend.h): parameter grads +=, activation grads =. */
#include "core/model.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/err.h"
#include "core/rng.h"

struct r1_layer_acts {
    float *x;           /* (N,C) layer input (residual stream) */
    float *n1, *rstd1;  /* (N,C), (N) */
    float *q, *k, *v;   /* (N,H·D), (N,KVH·D), (N,KVH·D); q, k after RoPE */
    float *att, *lse;   /* (N,H·D), (B,H,T) */
    float *h;           /* (N,C) residual after attention */
    float *n2, *rstd2;  /* (N,C), (N) */
    float *gate, *up, *act; /* (N,F) */
    /* precision bf16, training: the bf16 images of the matmul inputs n1, att, n2, act,
     * made in the forward and read again by the backward; the norms and SwiGLU write
     * only these (n1, n2 and act are NULL in bf16).  NULL in f32 and for a frozen model
     * (its images go to a->x16). */
    uint16_t *n1_16, *att16, *n2_16, *act16;
};

struct r1_model_acts {
    struct r1_layer_acts *l; /* n_layers */
    float *xout;             /* (N,C) residual after the last layer */
    float *nf, *rstdf;       /* (N,C), (N) */
    int32_t *tokens, *pos, *seg, *targets; /* (N) backend copies of the batch */
    /* head, over the compacted scored rows */
    int32_t *rows_host;      /* (N) host: indices of scored rows */
    int n_rows;
    float *hrows;            /* (N,C) gathered normalised rows */
    int32_t *htargets;       /* (N) */
    float *logp, *ent, *lsev;/* (N) */
    float *dlogp, *dent;     /* (N) */
    /* r1_model_pg_step's per-row inputs (N) and its sums (one struct), NULL when frozen */
    float *pg_old, *pg_ref, *pg_adv, *pg_w;
    struct r1_pg_stats *pg_stats;
    float *logits, *dlogits; /* (CHUNK,V) */
    float *host_buf;         /* (N) host scratch for compaction */
    float *host_logp;        /* (N) host, for r1_model_ce_step */
    int32_t *host_ibuf;      /* (N) host */
    /* backward scratch */
    float *dres, *dn, *dtmp; /* (N,C) */
    float *dgate, *dup, *dact; /* (N,F); dgate, dup NULL in bf16 (dgate16, dup16) */
    float *datt, *dq;        /* (N,H·D) */
    float *dk, *dv;          /* (N,KVH·D) */
    /* precision bf16: the bf16 image of a matmul's input (N·max(C, H·D, F)) and of its
     * output gradient (the larger of N·max(C, H·D, F) and CHUNK·V), the images of SwiGLU's
     * input gradients (N,F) and of RoPE's (N,H·D), (N,KVH·D); NULL in f32 */
    uint16_t *x16, *d16, *dgate16, *dup16, *dq16, *dk16;
    uint16_t *dres16; /* (N,C) the image of dres the RMSNorm backwards write; NULL in f32 */
    uint16_t *dv16;   /* (N,KVH·D) the image of dv attention16's backward writes; NULL in f32 */
};

/* ------------------------------------------------------------------------- */
/* configuration                                                             */

int r1_model_config_preset(struct r1_model_config *c, const char *name)
{
    memset(c, 0, sizeof(*c));
    c->arch = R1_ARCH_LLAMA;
    c->rms_eps = 1e-5f;
    c->rope_theta = 10000.0f;
    c->tie_embeddings = true;
    c->bos_id = -1;
    c->eos_id = -1;
    c->pad_id = -1;
    c->num_labels = 0;
    if (strcmp(name, "tiny") == 0) {
        /* byte-level vocabulary (core/tokenizer.h), a few hundred k parameters */
        c->vocab_size = 264, c->hidden_size = 64, c->n_layers = 2, c->n_heads = 4;
        c->n_kv_heads = 2, c->head_dim = 16, c->ffn_size = 192, c->max_seq_len = 512;
        c->eos_id = 256, c->pad_id = 263;
    } else if (strcmp(name, "small") == 0) {
        c->vocab_size = 264, c->hidden_size = 256, c->n_layers = 4, c->n_heads = 8;
        c->n_kv_heads = 4, c->head_dim = 32, c->ffn_size = 704, c->max_seq_len = 1024;
        c->eos_id = 256, c->pad_id = 263;
    } else if (strcmp(name, "smollm2-135m") == 0) {
        c->vocab_size = 49152, c->hidden_size = 576, c->n_layers = 30, c->n_heads = 9;
        c->n_kv_heads = 3, c->head_dim = 64, c->ffn_size = 1536, c->max_seq_len = 8192;
        c->rope_theta = 100000.0f, c->bos_id = 1, c->eos_id = 2;
    } else if (strcmp(name, "qwen2.5-0.5b") == 0) {
        c->arch = R1_ARCH_QWEN2;
        c->vocab_size = 151936, c->hidden_size = 896, c->n_layers = 24, c->n_heads = 14;
        c->n_kv_heads = 2, c->head_dim = 64, c->ffn_size = 4864, c->max_seq_len = 32768;
        c->rms_eps = 1e-6f, c->rope_theta = 1000000.0f, c->qkv_bias = true;
        c->bos_id = 151643, c->eos_id = 151643;
    } else if (strcmp(name, "qwen2.5-1.5b") == 0) {
        c->arch = R1_ARCH_QWEN2;
        c->vocab_size = 151936, c->hidden_size = 1536, c->n_layers = 28, c->n_heads = 12;
        c->n_kv_heads = 2, c->head_dim = 128, c->ffn_size = 8960, c->max_seq_len = 32768;
        c->rms_eps = 1e-6f, c->rope_theta = 1000000.0f, c->qkv_bias = true;
        c->bos_id = 151643, c->eos_id = 151643;
    } else {
        return r1_err_set(R1_EINVAL, "unknown model preset '%s'; use one of " R1_MODEL_PRESETS,
                          name);
    }
    return 0;
}

#define CHECK_RANGE(field, lo, hi)                                                              \
    do {                                                                                        \
        if (!(c->field >= (lo) && c->field <= (hi)))                                            \
            return r1_err_set(R1_EINVAL, "model config: %s = %g is out of range [%g, %g]",      \
                              #field, (double)c->field, (double)(lo), (double)(hi));            \
    } while (0)

int r1_model_config_check(const struct r1_model_config *c)
{
    CHECK_RANGE(vocab_size, 2, 1 << 22);
    CHECK_RANGE(hidden_size, 1, 1 << 16);
    CHECK_RANGE(n_layers, 1, 512);
    CHECK_RANGE(n_heads, 1, 1024);
    CHECK_RANGE(n_kv_heads, 1, 1024);
    CHECK_RANGE(head_dim, 2, 1024);
    CHECK_RANGE(ffn_size, 1, 1 << 18);
    CHECK_RANGE(max_seq_len, 1, 1 << 20);
    CHECK_RANGE(rms_eps, 1e-12, 1e-1);
    CHECK_RANGE(rope_theta, 1.0, 1e9);
    CHECK_RANGE(num_labels, 0, 1);
    if (c->n_heads % c->n_kv_heads != 0)
        return r1_err_set(R1_EINVAL,
                          "model config: n_heads (%d) must be a multiple of n_kv_heads (%d)",
                          c->n_heads, c->n_kv_heads);
    if (c->head_dim % 2 != 0)
        return r1_err_set(R1_EINVAL, "model config: head_dim (%d) must be even for RoPE",
                          c->head_dim);
    if (c->bos_id >= c->vocab_size || c->eos_id >= c->vocab_size || c->pad_id >= c->vocab_size)
        return r1_err_set(R1_EINVAL,
                          "model config: bos_id/eos_id/pad_id (%d/%d/%d) not below vocab_size %d",
                          c->bos_id, c->eos_id, c->pad_id, c->vocab_size);
    return 0;
}

int64_t r1_model_config_n_params(const struct r1_model_config *c)
{
    int64_t C = c->hidden_size, HD = (int64_t)c->n_heads * c->head_dim;
    int64_t KD = (int64_t)c->n_kv_heads * c->head_dim, F = c->ffn_size, V = c->vocab_size;
    int64_t layer = 2 * C + C * HD + 2 * C * KD + HD * C + 3 * C * F;
    if (c->qkv_bias)
        layer += HD + 2 * KD;
    if (c->num_labels > 0) /* score head instead of an LM head */
        return V * C + (int64_t)c->num_labels * C + C + c->n_layers * layer;
    return V * C * (c->tie_embeddings ? 1 : 2) + C + c->n_layers * layer;
}

/* ------------------------------------------------------------------------- */
/* parameters                                                                */

enum { P_MATRIX, P_NORM, P_BIAS, P_EMBED };

/* Adds one parameter tensor (planning or committed pass). */
static float *add_param(struct r1_model *m, int *k, const char *name, int kind, int64_t d0,
                        int64_t d1, float **grad)
{
    int64_t shape[2] = {d0, d1};
    int nd = d1 > 0 ? 2 : 1;
    struct r1_tensor w = r1_arena_take(&m->params, R1_F32, nd, shape);
    struct r1_tensor g = {0};
    if (!m->frozen)
        g = r1_arena_take(&m->grads, R1_F32, nd, shape);
    if (m->tensors) {
        struct r1_param *p = &m->tensors[*k];
        snprintf(p->name, sizeof(p->name), "%s", name);
        p->w = w;
        p->g = g;
        p->decay = (kind == P_MATRIX || kind == P_EMBED);
    }
    (*k)++;
    *grad = g.data;
    return w.data;
}

/* Lays out every parameter in HF order; called once to plan, once to bind. */
static int layout_params(struct r1_model *m)
{
    const struct r1_model_config *c = &m->cfg;
    int64_t C = c->hidden_size, HD = (int64_t)c->n_heads * c->head_dim;
    int64_t KD = (int64_t)c->n_kv_heads * c->head_dim, F = c->ffn_size, V = c->vocab_size;
    char nm[96];
    int k = 0;
    m->embed = add_param(m, &k, "model.embed_tokens.weight", P_EMBED, V, C, &m->dembed);
    for (int l = 0; l < c->n_layers; l++) {
        struct r1_layer *L = &m->layers[l], *dL = &m->dlayers[l];
#define P(field, suffix, kind, a, b)                                                            \
    snprintf(nm, sizeof(nm), "model.layers.%d.%s", l, suffix);                                  \
    L->field = add_param(m, &k, nm, kind, a, b, &dL->field)
        P(attn_norm, "input_layernorm.weight", P_NORM, C, 0);
        P(wq, "self_attn.q_proj.weight", P_MATRIX, HD, C);
        if (c->qkv_bias) {
            P(bq, "self_attn.q_proj.bias", P_BIAS, HD, 0);
        }
        P(wk, "self_attn.k_proj.weight", P_MATRIX, KD, C);
        if (c->qkv_bias) {
            P(bk, "self_attn.k_proj.bias", P_BIAS, KD, 0);
        }
        P(wv, "self_attn.v_proj.weight", P_MATRIX, KD, C);
        if (c->qkv_bias) {
            P(bv, "self_attn.v_proj.bias", P_BIAS, KD, 0);
        }
        P(wo, "self_attn.o_proj.weight", P_MATRIX, C, HD);
        P(mlp_norm, "post_attention_layernorm.weight", P_NORM, C, 0);
        P(wgate, "mlp.gate_proj.weight", P_MATRIX, F, C);
        P(wup, "mlp.up_proj.weight", P_MATRIX, F, C);
        P(wdown, "mlp.down_proj.weight", P_MATRIX, C, F);
#undef P
    }
    m->final_norm = add_param(m, &k, "model.norm.weight", P_NORM, C, 0, &m->dfinal_norm);
    if (c->num_labels > 0) { /* transformers' *ForSequenceClassification: no lm_head */
        m->lm_head = m->embed;
        m->dlm_head = m->dembed;
        m->score = add_param(m, &k, "score.weight", P_MATRIX, c->num_labels, C, &m->dscore);
    } else if (c->tie_embeddings) {
        m->lm_head = m->embed;
        m->dlm_head = m->dembed;
    } else {
        m->lm_head = add_param(m, &k, "lm_head.weight", P_EMBED, V, C, &m->dlm_head);
    }
    return k;
}

static int model_create(struct r1_model **out, const struct r1_model_config *cfg,
                        struct r1_backend *be, bool frozen)
{
    int rc = r1_model_config_check(cfg);
    if (rc)
        return rc;
    struct r1_model *m = calloc(1, sizeof(*m));
    if (!m)
        return r1_err_set(R1_ENOMEM, "model: out of host memory");
    m->cfg = *cfg;
    m->frozen = frozen;
    m->logit_scale = 1.0f;
    m->be = be;
    m->layers = calloc((size_t)cfg->n_layers, sizeof(*m->layers));
    m->dlayers = calloc((size_t)cfg->n_layers, sizeof(*m->dlayers));
    if (!m->layers || !m->dlayers) {
        rc = r1_err_set(R1_ENOMEM, "model: out of host memory");
        goto fail;
    }
    m->n_tensors = layout_params(m); /* planning pass */
    m->tensors = calloc((size_t)m->n_tensors, sizeof(*m->tensors));
    if (!m->tensors) {
        rc = r1_err_set(R1_ENOMEM, "model: out of host memory");
        goto fail;
    }
    if ((rc = r1_arena_commit(&m->params, be)) ||
        (!frozen && (rc = r1_arena_commit(&m->grads, be))))
        goto fail;
    layout_params(m); /* binding pass */
    m->param_mem = (float *)m->params.base;
    m->grad_mem = (float *)m->grads.base;
    m->n_params = 0;
    for (int i = 0; i < m->n_tensors; i++)
        m->n_params += r1_tensor_numel(&m->tensors[i].w);

    /* RoPE tables, computed as Hugging Face does: inv_freq and the angle in f32 */
    int D2 = cfg->head_dim / 2;
    size_t tab = (size_t)cfg->max_seq_len * D2 * sizeof(float);
    m->rope_cos = be->ops->alloc(be->ctx, tab);
    m->rope_sin = be->ops->alloc(be->ctx, tab);
    float *hc = malloc(tab), *hs = malloc(tab);
    if (!m->rope_cos || !m->rope_sin || !hc || !hs) {
        free(hc);
        free(hs);
        rc = r1_err_set(R1_ENOMEM, "model: cannot allocate RoPE tables (%zu bytes)", tab);
        goto fail;
    }
    for (int i = 0; i < D2; i++) {
        float inv = (float)(1.0 / pow((double)cfg->rope_theta, (double)(2 * i) / cfg->head_dim));
        for (int p = 0; p < cfg->max_seq_len; p++) {
            float ang = (float)p * inv;
            hc[(size_t)p * D2 + i] = (float)cos((double)ang);
            hs[(size_t)p * D2 + i] = (float)sin((double)ang);
        }
    }
    be->ops->upload(be->ctx, m->rope_cos, hc, tab);
    be->ops->upload(be->ctx, m->rope_sin, hs, tab);
    free(hc);
    free(hs);
    *out = m;
    return 0;
fail:
    r1_model_free(m);
    return rc;
}

int r1_model_create(struct r1_model **out, const struct r1_model_config *cfg,
                    struct r1_backend *be)
{
    return model_create(out, cfg, be, false);
}

int r1_model_create_frozen(struct r1_model **out, const struct r1_model_config *cfg,
                           struct r1_backend *be)
{
    return model_create(out, cfg, be, true);
}

static void free_acts(struct r1_model *m)
{
    if (m->a) {
        free(m->a->l);
        free(m->a->rows_host);
        free(m->a->host_buf);
        free(m->a->host_ibuf);
        free(m->a->host_logp);
        free(m->a);
        m->a = NULL;
    }
    r1_arena_release(&m->acts);
}

void r1_model_free(struct r1_model *m)
{
    if (!m)
        return;
    free_acts(m);
    if (m->rope_cos)
        m->be->ops->free(m->be->ctx, m->rope_cos);
    if (m->rope_sin)
        m->be->ops->free(m->be->ctx, m->rope_sin);
    r1_arena_release(&m->params);
    r1_arena_release(&m->grads);
    r1_arena_release(&m->w16);
    free(m->tensors);
    free(m->layers);
    free(m->dlayers);
    free(m);
}

const struct r1_param *r1_model_find(const struct r1_model *m, const char *name)
{
    for (int i = 0; i < m->n_tensors; i++)
        if (strcmp(m->tensors[i].name, name) == 0)
            return &m->tensors[i];
    return NULL;
}

void r1_model_download_param(const struct r1_model *m, int i, float *host)
{
    const struct r1_param *p = &m->tensors[i];
    m->be->ops->download(m->be->ctx, host, p->w.data, r1_tensor_nbytes(&p->w));
}

void r1_model_upload_param(struct r1_model *m, int i, const float *host)
{
    const struct r1_param *p = &m->tensors[i];
    m->be->ops->upload(m->be->ctx, p->w.data, host, r1_tensor_nbytes(&p->w));
    r1_model_params_changed(m);
}

void r1_model_params_changed(struct r1_model *m)
{
    m->w16_fresh = false;
}

void r1_model_sync16(struct r1_model *m)
{
    if (m->precision != R1_BF16 || m->w16_fresh)
        return;
    /* the whole arena, gaps included: one pass */
    m->be->ops->convert_bf16(m->be->ctx, m->w16_mem, m->param_mem,
                             (int64_t)(m->params.cap / sizeof(float)));
    m->w16_fresh = true;
}

/* Initialises tensor k (the rules of r1_model_init_weights). */
static int init_tensor(struct r1_model *m, int k, uint64_t seed)
{
    const struct r1_model_config *c = &m->cfg;
    float resid_scale = 1.0f / sqrtf(2.0f * (float)c->n_layers);
    struct r1_param *p = &m->tensors[k];
    int64_t n = r1_tensor_numel(&p->w);
    float *h = malloc((size_t)n * sizeof(float));
    if (!h)
        return r1_err_set(R1_ENOMEM, "model: out of host memory initialising %s", p->name);
    const char *s = p->name;
    size_t len = strlen(s);
    int is_norm = len > 11 && strcmp(s + len - 11, "norm.weight") == 0;
    int is_bias = len > 5 && strcmp(s + len - 5, ".bias") == 0;
    int is_resid = strstr(s, "o_proj.weight") || strstr(s, "down_proj.weight");
    float std = 0.02f * (is_resid ? resid_scale : 1.0f);
    if (strcmp(s, "score.weight") == 0) /* unit-variance-ish scores from unit-rms rows */
        std = 1.0f / sqrtf((float)c->hidden_size + 1.0f);
    for (int64_t i = 0; i < n; i++) {
        if (is_norm)
            h[i] = 1.0f;
        else if (is_bias)
            h[i] = 0.0f;
        else
            h[i] = std * r1_rng_normal_at(seed, R1_STREAM_INIT + (uint64_t)k, (uint64_t)i);
    }
    r1_model_upload_param(m, k, h);
    free(h);
    return 0;
}

int r1_model_init_weights(struct r1_model *m, uint64_t seed)
{
    for (int k = 0; k < m->n_tensors; k++) {
        int rc = init_tensor(m, k, seed);
        if (rc)
            return rc;
    }
    return 0;
}

bool r1_model_has_score_head(const struct r1_model *m)
{
    return m && m->cfg.num_labels == 1 && m->score != NULL;
}

int r1_model_init_score(struct r1_model *m, uint64_t seed)
{
    if (!r1_model_has_score_head(m))
        return r1_err_set(R1_EINVAL, "model: no score head to initialise; create the model "
                          "with num_labels = 1");
    for (int k = 0; k < m->n_tensors; k++)
        if (m->tensors[k].w.data == m->score)
            return init_tensor(m, k, seed);
    return r1_err_set(R1_ESTATE, "model: score.weight is not among the tensors");
}

int r1_model_copy_weights(struct r1_model *dst, const struct r1_model *src, int *n_copied)
{
    int copied = 0;
    for (int k = 0; k < dst->n_tensors; k++) {
        const struct r1_param *p = &dst->tensors[k];
        int j = -1;
        for (int i = 0; i < src->n_tensors && j < 0; i++)
            if (strcmp(src->tensors[i].name, p->name) == 0)
                j = i;
        if (j < 0)
            continue;
        const struct r1_param *q = &src->tensors[j];
        int same = q->w.ndim == p->w.ndim;
        for (int d = 0; same && d < p->w.ndim; d++)
            same = q->w.shape[d] == p->w.shape[d];
        if (!same)
            return r1_err_set(R1_EINVAL, "model: tensor '%s' has different shapes in the two "
                              "models; copy between models of one configuration", p->name);
        float *h = malloc(r1_tensor_nbytes(&p->w));
        if (!h)
            return r1_err_set(R1_ENOMEM, "model: out of host memory copying %s", p->name);
        r1_model_download_param(src, j, h);
        r1_model_upload_param(dst, k, h);
        free(h);
        copied++;
    }
    if (n_copied)
        *n_copied = copied;
    return 0;
}

/* ------------------------------------------------------------------------- */
/* activations                                                               */

static void layout_acts(struct r1_model *m, struct r1_model_acts *a, int B, int T)
{
    const struct r1_model_config *c = &m->cfg;
    int64_t N = (int64_t)B * T, C = c->hidden_size, HD = (int64_t)c->n_heads * c->head_dim;
    int64_t KD = (int64_t)c->n_kv_heads * c->head_dim, F = c->ffn_size, V = c->vocab_size;
    int64_t CH = R1_MODEL_HEAD_CHUNK < N ? R1_MODEL_HEAD_CHUNK : N;
    struct r1_arena *ar = &m->acts;
#define F32(n) ((float *)r1_arena_take_bytes(ar, (size_t)(n) * sizeof(float)))
#define I32(n) ((int32_t *)r1_arena_take_bytes(ar, (size_t)(n) * sizeof(int32_t)))
    bool recompute = m->recompute && !m->frozen;
    bool bf16 = m->precision == R1_BF16, half = bf16 && !m->frozen;
#define BF16(n) ((uint16_t *)r1_arena_take_bytes(ar, (size_t)(n) * sizeof(uint16_t)))
    for (int l = 0; l < c->n_layers; l++) {
        struct r1_layer_acts *L = &a->l[l];
        if (m->frozen && l >= 2) { /* forward only: layer l reuses layer l-2's buffers, so */
            *L = a->l[l - 2];      /* its input x is never the buffer it writes (l+1's x) */
            continue;
        }
        if (recompute && l >= 1) { /* every layer keeps its input x and shares the rest */
            *L = a->l[0];
            L->x = F32(N * C);
            continue;
        }
        L->x = F32(N * C);
        L->n1 = bf16 ? NULL : F32(N * C); /* bf16: only its image (n1_16 or x16) */
        L->rstd1 = F32(N);
        L->q = F32(N * HD);
        L->k = F32(N * KD);
        L->v = F32(N * KD);
        L->att = F32(N * HD);
        L->lse = F32((int64_t)B * c->n_heads * T);
        L->h = F32(N * C);
        L->n2 = bf16 ? NULL : F32(N * C);
        L->rstd2 = F32(N);
        L->gate = F32(N * F);
        L->up = F32(N * F);
        L->act = bf16 ? NULL : F32(N * F);
        if (half) {
            L->n1_16 = BF16(N * C);
            L->att16 = BF16(N * HD);
            L->n2_16 = BF16(N * C);
            L->act16 = BF16(N * F);
        }
    }
    a->xout = F32(N * C);
    a->nf = F32(N * C);
    a->rstdf = F32(N);
    a->tokens = I32(N);
    a->pos = I32(N);
    a->seg = I32(N);
    a->targets = I32(N);
    a->hrows = F32(N * C);
    a->htargets = I32(N);
    a->logp = F32(N);
    a->ent = F32(N);
    a->lsev = F32(N);
    a->logits = F32(CH * V);
    int64_t widest = C > HD ? C : HD;
    widest = widest > F ? widest : F;
    if (bf16)
        a->x16 = BF16(N * widest);
    if (m->frozen) /* no backward: no gradient buffers */
        return;
    if (bf16)
        a->d16 = BF16(N * widest > CH * V ? N * widest : CH * V);
    a->dlogp = F32(N);
    a->dent = F32(N);
    a->pg_old = F32(N);
    a->pg_ref = F32(N);
    a->pg_adv = F32(N);
    a->pg_w = F32(N);
    a->pg_stats = r1_arena_take_bytes(ar, sizeof(struct r1_pg_stats));
    a->dlogits = bf16 ? NULL : F32(CH * V); /* bf16: the loss head writes d16 */
    a->dres = F32(N * C);
    a->dn = F32(N * C);
    a->dtmp = F32(N * C);
    if (bf16) { /* SwiGLU's backward writes only the images its two matmuls read */
        a->dgate16 = BF16(N * F);
        a->dup16 = BF16(N * F);
        a->dq16 = BF16(N * HD);
        a->dk16 = BF16(N * KD);
        a->dres16 = BF16(N * C);
        a->dv16 = BF16(N * KD);
    } else {
        a->dgate = F32(N * F);
        a->dup = F32(N * F);
    }
    a->dact = F32(N * F);
    a->datt = F32(N * HD);
    a->dq = F32(N * HD);
    a->dk = F32(N * KD);
    a->dv = F32(N * KD);
#undef F32
#undef I32
#undef BF16
}

void r1_model_set_recompute(struct r1_model *m, bool on)
{
    if (m->frozen || m->recompute == on)
        return;
    m->recompute = on;
    free_acts(m);
    m->max_B = m->max_T = 0;
    m->have_forward = false;
}

int r1_model_set_precision(struct r1_model *m, enum r1_dtype dt)
{
    const struct r1_backend_ops *op = m->be->ops;
    if (dt != R1_F32 && dt != R1_BF16)
        return r1_err_set(R1_EINVAL, "model: precision is f32 or bf16, not %s",
                          r1_dtype_name(dt));
    if (dt == m->precision)
        return 0;
    if (dt == R1_BF16 && (!op->matmul16_forward || !op->matmul16_backward || !op->convert_bf16 ||
                          !op->attention16_forward || !op->attention16_backward))
        return r1_err_set(R1_EINVAL, "model: the %s backend has no bf16 matmuls and attention; "
                          "use precision f32", op->name);
    r1_arena_release(&m->w16);
    m->w16_mem = NULL;
    if (dt == R1_BF16) {
        memset(&m->w16, 0, sizeof(m->w16));
        r1_arena_take_bytes(&m->w16, m->params.cap / sizeof(float) * sizeof(uint16_t));
        int rc = r1_arena_commit(&m->w16, m->be);
        if (rc)
            return r1_err_wrap(rc, "model: the bf16 copy of %lld parameters",
                               (long long)m->n_params);
        m->w16_mem = r1_arena_take_bytes(&m->w16, m->params.cap / sizeof(float) *
                                                      sizeof(uint16_t));
    }
    m->w16_fresh = false;
    m->precision = dt;
    free_acts(m);
    m->max_B = m->max_T = 0;
    m->have_forward = false;
    return 0;
}

/* The backend's scratch for calls up to batch B×T (r1_backend_ops.reserve), so that no op
 * allocates during a run. */
static int reserve_scratch(struct r1_model *m, int B, int T)
{
    const struct r1_backend_ops *op = m->be->ops;
    if (!op->reserve)
        return 0;
    const struct r1_model_config *c = &m->cfg;
    int64_t N = (int64_t)B * T, HD = (int64_t)c->n_heads * c->head_dim;
    struct r1_op_sizes s = {0};
    s.rows = N;
    s.T = T;
    s.H = c->n_heads;
    s.D = c->head_dim;
    s.hidden = c->hidden_size;
    s.width = c->hidden_size > HD ? c->hidden_size : HD;
    s.width = s.width > c->ffn_size ? s.width : c->ffn_size;
    s.vocab = c->vocab_size;
    s.head_rows = N < R1_MODEL_HEAD_CHUNK ? N : R1_MODEL_HEAD_CHUNK;
    s.bf16 = m->precision == R1_BF16;
    size_t held;
    int rc = op->reserve(m->be->ctx, &s, &held);
    return rc ? r1_err_wrap(rc, "model: the backend's scratch for batch %dx%d", B, T) : 0;
}

int r1_model_reserve(struct r1_model *m, int B, int T)
{
    if (B <= 0 || T <= 0)
        return r1_err_set(R1_EINVAL, "model: batch shape %dx%d must be positive", B, T);
    if (T > m->cfg.max_seq_len)
        return r1_err_set(R1_EINVAL,
                          "model: sequence length %d exceeds max_seq_len %d; shorten the "
                          "sequences or raise max_seq_len",
                          T, m->cfg.max_seq_len);
    if (m->a && B <= m->max_B && T <= m->max_T && (int64_t)B * T <= (int64_t)m->max_B * m->max_T)
        return 0;
    free_acts(m);
    struct r1_model_acts *a = calloc(1, sizeof(*a));
    if (!a)
        return r1_err_set(R1_ENOMEM, "model: out of host memory");
    a->l = calloc((size_t)m->cfg.n_layers, sizeof(*a->l));
    size_t N = (size_t)B * T;
    a->rows_host = malloc(N * sizeof(int32_t));
    a->host_buf = malloc(N * sizeof(float));
    a->host_ibuf = malloc(N * sizeof(int32_t));
    a->host_logp = malloc(N * sizeof(float));
    m->a = a;
    if (!a->l || !a->rows_host || !a->host_buf || !a->host_ibuf || !a->host_logp) {
        free_acts(m);
        return r1_err_set(R1_ENOMEM, "model: out of host memory");
    }
    memset(&m->acts, 0, sizeof(m->acts));
    layout_acts(m, a, B, T);
    int rc = r1_arena_commit(&m->acts, m->be);
    if (rc) {
        free_acts(m);
        return r1_err_wrap(rc, "model: activations for batch %dx%d", B, T);
    }
    layout_acts(m, a, B, T);
    if ((rc = reserve_scratch(m, B, T))) {
        free_acts(m);
        return rc;
    }
    m->max_B = B;
    m->max_T = T;
    m->have_forward = false;
    return 0;
}

/* ------------------------------------------------------------------------- */
/* forward                                                                   */

static int check_batch(const struct r1_model *m, const struct r1_batch *b)
{
    if (!m->a)
        return r1_err_set(R1_ESTATE, "model: r1_model_reserve was not called");
    if (b->B <= 0 || b->T <= 0 || b->B > m->max_B || b->T > m->max_T)
        return r1_err_set(R1_EINVAL, "model: batch %dx%d exceeds the reserved %dx%d", b->B, b->T,
                          m->max_B, m->max_T);
    int64_t N = (int64_t)b->B * b->T;
    for (int64_t i = 0; i < N; i++) {
        if (b->tokens[i] < 0 || b->tokens[i] >= m->cfg.vocab_size)
            return r1_err_set(R1_EINVAL, "model: token id %d at row %lld, position %lld is not in "
                              "[0, %d)", b->tokens[i], (long long)(i / b->T),
                              (long long)(i % b->T), m->cfg.vocab_size);
        if (b->pos[i] < 0 || b->pos[i] >= m->cfg.max_seq_len)
            return r1_err_set(R1_EINVAL, "model: position id %d at row %lld is not in [0, %d)",
                              b->pos[i], (long long)(i / b->T), m->cfg.max_seq_len);
        if (b->targets && b->targets[i] >= m->cfg.vocab_size)
            return r1_err_set(R1_EINVAL, "model: target id %d is not below vocab size %d",
                              b->targets[i], m->cfg.vocab_size);
    }
    return 0;
}

/* ---- matmuls in the model's precision ---------------------------------------- */

/* In bf16, the bf16 image of x (n floats) in dst, or in a->x16 when dst is NULL, for the
 * matmuls that read x next; NULL in f32. */
static uint16_t *half_into(struct r1_model *m, uint16_t *dst, const float *x, int64_t n)
{
    if (m->precision != R1_BF16)
        return NULL;
    dst = dst ? dst : m->a->x16;
    m->be->ops->convert_bf16(m->be->ctx, dst, x, n);
    return dst;
}

static const uint16_t *half_input(struct r1_model *m, const float *x, int64_t n)
{
    return half_into(m, NULL, x, n);
}

uint16_t *r1_model_param16(const struct r1_model *m, const float *w)
{
    return m->w16_mem + (w - m->param_mem);
}

/* out (M,N) = in (M,K) · w (N,K)ᵀ + bias; in16 = half_input(in) or NULL (f32) */
static void mm_forward(struct r1_model *m, float *out, const float *in, const uint16_t *in16,
                       const float *w, const float *bias, const float *res, int M, int K, int N)
{
    const struct r1_backend_ops *op = m->be->ops;
    if (in16)
        op->matmul16_forward(m->be->ctx, out, in16, r1_model_param16(m, w), bias, res, M, K, N);
    else
        op->matmul_forward(m->be->ctx, out, in, w, bias, res, M, K, N);
}

/* Its backward (backend.h matmul_backward); in bf16 dout is rounded into a->d16 first,
 * unless the op that made dout wrote its bf16 image (dout16, not NULL) itself. */
static void mm_backward(struct r1_model *m, float *din, int din_add, float *dw, float *dbias,
                        const float *dout, const uint16_t *dout16, const float *in,
                        const uint16_t *in16, const float *w, int M, int K, int N)
{
    const struct r1_backend_ops *op = m->be->ops;
    void *cx = m->be->ctx;
    if (!in16) {
        op->matmul_backward(cx, din, din_add, dw, dbias, dout, in, w, M, K, N);
        return;
    }
    if (!dout16) {
        op->convert_bf16(cx, m->a->d16, dout, (int64_t)M * N);
        dout16 = m->a->d16;
    }
    op->matmul16_backward(cx, din, din_add, dw, dbias, dout16, in16, r1_model_param16(m, w), M,
                          K, N);
}

/* In bf16, where the forward's op writes the bf16 image of a matmul input: the layer's own
 * (training) or a->x16 (a frozen model's); NULL in f32. */
static uint16_t *image16(const struct r1_model *m, uint16_t *own)
{
    return m->precision != R1_BF16 ? NULL : own ? own : m->a->x16;
}

/* Layer l of the batch shape (B,T) from a->l[l].x to xnext (N,C). */
static void layer_forward(struct r1_model *m, int l, int B, int T, float *xnext)
{
    const struct r1_model_config *c = &m->cfg;
    const struct r1_backend_ops *op = m->be->ops;
    void *cx = m->be->ctx;
    struct r1_model_acts *a = m->a;
    int N = B * T, C = c->hidden_size, H = c->n_heads, KVH = c->n_kv_heads;
    int D = c->head_dim, HD = H * D, KD = KVH * D, F = c->ffn_size;
    struct r1_layer *W = &m->layers[l];
    struct r1_layer_acts *L = &a->l[l];
    uint16_t *h16;
    /* in bf16 the norms and SwiGLU write only the bf16 images their matmuls read */
    h16 = image16(m, L->n1_16);
    op->rmsnorm_forward(cx, L->n1, h16, L->rstd1, L->x, W->attn_norm, N, C, c->rms_eps);
    mm_forward(m, L->q, L->n1, h16, W->wq, W->bq, NULL, N, C, HD);
    mm_forward(m, L->k, L->n1, h16, W->wk, W->bk, NULL, N, C, KD);
    mm_forward(m, L->v, L->n1, h16, W->wv, W->bv, NULL, N, C, KD);
    op->rope_forward(cx, L->q, a->pos, m->rope_cos, m->rope_sin, N, H, D);
    op->rope_forward(cx, L->k, a->pos, m->rope_cos, m->rope_sin, N, KVH, D);
    h16 = image16(m, L->att16); /* in bf16 the kernel writes the image wo's matmul reads */
    if (h16)
        op->attention16_forward(cx, L->att, h16, L->lse, L->q, L->k, L->v, a->seg, B, T, H, KVH,
                                D);
    else
        op->attention_forward(cx, L->att, L->lse, L->q, L->k, L->v, a->seg, B, T, H, KVH, D);
    mm_forward(m, L->h, L->att, h16, W->wo, NULL, L->x, N, HD, C); /* + the residual x */
    h16 = image16(m, L->n2_16);
    op->rmsnorm_forward(cx, L->n2, h16, L->rstd2, L->h, W->mlp_norm, N, C, c->rms_eps);
    mm_forward(m, L->gate, L->n2, h16, W->wgate, NULL, NULL, N, C, F);
    mm_forward(m, L->up, L->n2, h16, W->wup, NULL, NULL, N, C, F);
    h16 = image16(m, L->act16);
    op->swiglu_forward(cx, L->act, h16, L->gate, L->up, (int64_t)N * F);
    mm_forward(m, xnext, L->act, h16, W->wdown, NULL, L->h, N, F, C); /* + the residual h */
}

/* Runs the layers and the final norm for batch b (a->nf filled). */
static void forward_trunk(struct r1_model *m, const struct r1_batch *b)
{
    const struct r1_model_config *c = &m->cfg;
    const struct r1_backend_ops *op = m->be->ops;
    void *cx = m->be->ctx;
    struct r1_model_acts *a = m->a;
    int N = b->B * b->T, C = c->hidden_size;

    op->upload(cx, a->tokens, b->tokens, (size_t)N * sizeof(int32_t));
    op->upload(cx, a->pos, b->pos, (size_t)N * sizeof(int32_t));
    op->upload(cx, a->seg, b->seg, (size_t)N * sizeof(int32_t));
    r1_model_sync16(m);

    op->embedding_forward(cx, a->l[0].x, a->tokens, m->embed, N, C);
    for (int l = 0; l < c->n_layers; l++)
        layer_forward(m, l, b->B, b->T, l + 1 < c->n_layers ? a->l[l + 1].x : a->xout);
    op->rmsnorm_forward(cx, a->nf, NULL, a->rstdf, a->xout, m->final_norm, N, C, c->rms_eps);
}

/* Copies rows between the full (N,C) layout and the compacted (n_rows,C) layout
 * of the scored rows listed in a->rows_host: gather (full -> compact) or scatter.
 * Runs of consecutive rows move in one copy. */
static void move_rows(struct r1_model *m, float *compact, float *full, bool gather)
{
    const struct r1_backend_ops *op = m->be->ops;
    size_t rb = (size_t)m->cfg.hidden_size * sizeof(float);
    struct r1_model_acts *a = m->a;
    for (int i = 0; i < a->n_rows;) {
        int j = i + 1;
        while (j < a->n_rows && a->rows_host[j] == a->rows_host[j - 1] + 1)
            j++;
        char *c = (char *)compact + (size_t)i * rb, *f = (char *)full + (size_t)a->rows_host[i] * rb;
        op->copy(m->be->ctx, gather ? c : f, gather ? f : c, (size_t)(j - i) * rb);
        i = j;
    }
}

/* Compacts the scored rows of batch b (target >= 0) into a->rows_host (their indices),
 * a->htargets (their targets) and a->hrows (their final-norm rows, from a->nf). */
static void gather_scored(struct r1_model *m, const struct r1_batch *b)
{
    struct r1_model_acts *a = m->a;
    int N = b->B * b->T;
    a->n_rows = 0;
    for (int i = 0; i < N; i++)
        if (b->targets[i] >= 0) {
            a->rows_host[a->n_rows] = i;
            a->host_ibuf[a->n_rows] = b->targets[i];
            a->n_rows++;
        }
    m->be->ops->upload(m->be->ctx, a->htargets, a->host_ibuf,
                       (size_t)a->n_rows * sizeof(int32_t));
    move_rows(m, a->hrows, a->nf, true);
}

/* The compacted per-row values src (a->n_rows, backend) to host (N) in batch order, 0 on
 * the unscored rows. */
static void scatter_scored(struct r1_model *m, float *host, const float *src, int N)
{
    struct r1_model_acts *a = m->a;
    memset(host, 0, (size_t)N * sizeof(float));
    m->be->ops->download(m->be->ctx, a->host_buf, src, (size_t)a->n_rows * sizeof(float));
    for (int i = 0; i < a->n_rows; i++)
        host[a->rows_host[i]] = a->host_buf[i];
}

/* What the LM head's pass computes with its forward, chunk by chunk: nothing more (a
 * forward), cross-entropy's gradient (ce_w: its weights, host (B,T), over ce_denom) or the
 * policy-gradient loss pg on the tokens pg_t (host (B,T)), its sums from pg_st on. */
struct head_loss {
    const float *ce_w;
    double ce_denom;
    const struct r1_pg_cfg *pg;
    const struct r1_pg_tokens *pg_t;
    const struct r1_pg_stats *pg_st;
};

/* Rows [r, r + CHUNK) of the compacted scored rows (a->hrows) through the LM head: their
 * logits (a->logits), then with fwd their log-probs, entropies and lse (a->logp, a->ent,
 * a->lsev), with hl->pg their loss's gradients (a->dlogp, a->dent), then with dh (not
 * NULL) the gradient from a->dlogp (and a->dent with dent): dlogits, the head's weight
 * gradient (+=) and the rows' gradient into dh's rows (=). */
static void head_chunk(struct r1_model *m, int r, bool fwd, const struct head_loss *hl,
                       float *dh, bool dent)
{
    const struct r1_backend_ops *op = m->be->ops;
    void *cx = m->be->ctx;
    struct r1_model_acts *a = m->a;
    int C = m->cfg.hidden_size, V = m->cfg.vocab_size;
    int n = a->n_rows - r < R1_MODEL_HEAD_CHUNK ? a->n_rows - r : R1_MODEL_HEAD_CHUNK;
    const float *hr = a->hrows + (size_t)r * C;
    const uint16_t *h16 = half_input(m, hr, (int64_t)n * C);
    mm_forward(m, a->logits, hr, h16, m->lm_head, NULL, NULL, n, C, V);
    if (m->logit_scale != 1.0f)
        op->scale(cx, a->logits, m->logit_scale, (int64_t)n * V);
    if (fwd)
        op->logprobs_forward(cx, a->logp + r, a->ent + r, a->lsev + r, a->logits,
                             a->htargets + r, n, V);
    if (hl && hl->pg)
        op->pg_loss(cx, a->dlogp + r, dent ? a->dent + r : NULL, a->pg_stats, a->logp + r,
                    hl->pg_t->old_logp ? a->pg_old + r : NULL,
                    hl->pg_t->ref_logp ? a->pg_ref + r : NULL,
                    a->ent + r, a->pg_adv + r, a->pg_w + r, hl->pg, n);
    if (!dh)
        return;
    /* d(s·z)/dz = s; in bf16 straight to the bf16 image the matmul backward reads */
    uint16_t *dz16 = h16 ? a->d16 : NULL;
    op->logprobs_backward(cx, a->dlogits, dz16, a->logits, a->lsev + r, a->ent + r,
                          a->htargets + r, a->dlogp + r, dent ? a->dent + r : NULL,
                          m->logit_scale, n, V);
    mm_backward(m, dh + (size_t)r * C, 0, m->dlm_head, NULL, a->dlogits, dz16, hr, h16,
                m->lm_head, n, C, V);
}

/* The scored rows' values of host (B,T) to dst (a->n_rows, backend), compacted. */
static void upload_scored(struct r1_model *m, float *dst, const float *host)
{
    struct r1_model_acts *a = m->a;
    for (int i = 0; i < a->n_rows; i++)
        a->host_buf[i] = host[a->rows_host[i]];
    m->be->ops->upload(m->be->ctx, dst, a->host_buf, (size_t)a->n_rows * sizeof(float));
}

/* Batch b through the layers and the LM head (a->logp, a->ent, a->lsev of its scored rows);
 * with a loss hl, the head's backward too, chunk by chunk as the logits are made: the rows'
 * gradient in a->dtmp, the head's added.  The loss's per-token inputs go to the backend
 * compacted, once the scored rows are known. */
static void lm_pass(struct r1_model *m, const struct r1_batch *b, const struct head_loss *hl)
{
    struct r1_model_acts *a = m->a;
    forward_trunk(m, b);
    gather_scored(m, b);
    if (hl && hl->ce_w) { /* dL/dlogp = -w/denom, known before the forward */
        for (int i = 0; i < a->n_rows; i++)
            a->host_buf[i] = (float)(-(double)hl->ce_w[a->rows_host[i]] / hl->ce_denom);
        m->be->ops->upload(m->be->ctx, a->dlogp, a->host_buf,
                           (size_t)a->n_rows * sizeof(float));
    }
    if (hl && hl->pg) {
        const struct r1_pg_tokens *t = hl->pg_t;
        if (t->old_logp)
            upload_scored(m, a->pg_old, t->old_logp);
        if (t->ref_logp)
            upload_scored(m, a->pg_ref, t->ref_logp);
        upload_scored(m, a->pg_adv, t->adv);
        upload_scored(m, a->pg_w, t->weight);
        m->be->ops->upload(m->be->ctx, a->pg_stats, hl->pg_st, sizeof(*hl->pg_st));
    }
    bool dent = hl && hl->pg && hl->pg->entropy_coef != 0.0f;
    for (int r = 0; r < a->n_rows; r += R1_MODEL_HEAD_CHUNK)
        head_chunk(m, r, true, hl, hl ? a->dtmp : NULL, dent);
    m->cur_B = b->B;
    m->cur_T = b->T;
    m->fwd_score = false;
}

int r1_model_forward(struct r1_model *m, const struct r1_batch *b, float *logp, float *entropy)
{
    int rc = check_batch(m, b);
    if (rc)
        return rc;
    lm_pass(m, b, NULL);
    if (logp)
        scatter_scored(m, logp, m->a->logp, b->B * b->T);
    if (entropy)
        scatter_scored(m, entropy, m->a->ent, b->B * b->T);
    m->have_forward = true;
    return r1_backend_check(m->be);
}

int r1_model_score_forward(struct r1_model *m, const struct r1_batch *b, const int32_t *last,
                           float *scores)
{
    if (!r1_model_has_score_head(m))
        return r1_err_set(R1_EINVAL, "model: score forward on a model without a score head; "
                          "load a reward model (num_labels 1)");
    int rc = check_batch(m, b);
    if (rc)
        return rc;
    for (int r = 0; r < b->B; r++)
        if (last[r] < 0 || last[r] >= b->T)
            return r1_err_set(R1_EINVAL, "model: scored position %d of row %d is not in [0, %d)",
                              last[r], r, b->T);
    const struct r1_backend_ops *op = m->be->ops;
    void *cx = m->be->ctx;
    struct r1_model_acts *a = m->a;
    int C = m->cfg.hidden_size;

    forward_trunk(m, b);
    /* gather the scored rows (row r of the batch -> compact row r) and project them */
    a->n_rows = b->B;
    for (int r = 0; r < b->B; r++)
        a->rows_host[r] = r * b->T + last[r];
    move_rows(m, a->hrows, a->nf, true);
    op->matmul_forward(cx, a->logp, a->hrows, m->score, NULL, NULL, b->B, C, 1); /* (B,1) */
    op->download(cx, scores, a->logp, (size_t)b->B * sizeof(float));
    m->cur_B = b->B;
    m->cur_T = b->T;
    m->have_forward = true;
    m->fwd_score = true;
    return r1_backend_check(m->be);
}

int r1_model_logits(struct r1_model *m, const struct r1_batch *b, const int32_t *rows,
                    int n_rows, float *logits)
{
    int rc = check_batch(m, b);
    if (rc)
        return rc;
    const struct r1_backend_ops *op = m->be->ops;
    void *cx = m->be->ctx;
    struct r1_model_acts *a = m->a;
    int N = b->B * b->T, C = m->cfg.hidden_size, V = m->cfg.vocab_size;
    for (int i = 0; i < n_rows; i++)
        if (rows[i] < 0 || rows[i] >= N)
            return r1_err_set(R1_EINVAL, "model: logits row %d out of range [0, %d)", rows[i], N);
    forward_trunk(m, b);
    m->have_forward = false; /* the head state is not set up for a backward */
    for (int r = 0; r < n_rows; r += R1_MODEL_HEAD_CHUNK) {
        int n = n_rows - r < R1_MODEL_HEAD_CHUNK ? n_rows - r : R1_MODEL_HEAD_CHUNK;
        a->n_rows = n;
        memcpy(a->rows_host, rows + r, (size_t)n * sizeof(int32_t));
        move_rows(m, a->hrows, a->nf, true);
        mm_forward(m, a->logits, a->hrows, half_input(m, a->hrows, (int64_t)n * C), m->lm_head,
                   NULL, NULL, n, C, V);
        op->download(cx, logits + (size_t)r * V, a->logits, (size_t)n * V * sizeof(float));
    }
    return r1_backend_check(m->be);
}

/* ------------------------------------------------------------------------- */
/* backward                                                                  */

static void backward_trunk(struct r1_model *m, float *dh);

int r1_model_backward(struct r1_model *m, const float *dlogp, const float *dentropy)
{
    if (m->frozen)
        return r1_err_set(R1_ESTATE, "model: backward on a frozen (forward-only) model");
    if (!m->have_forward || m->fwd_score)
        return r1_err_set(R1_ESTATE, "model: backward without a matching forward");
    struct r1_model_acts *a = m->a;

    /* head: per-token gradients to the compacted rows, logits recomputed per chunk */
    upload_scored(m, a->dlogp, dlogp);
    if (dentropy)
        upload_scored(m, a->dent, dentropy);
    float *dh = a->dtmp; /* (n_rows, C) gradient of the gathered rows */
    for (int r = 0; r < a->n_rows; r += R1_MODEL_HEAD_CHUNK) /* logits recomputed */
        head_chunk(m, r, false, NULL, dh, dentropy != NULL);
    backward_trunk(m, dh);
    m->have_forward = false;
    return r1_backend_check(m->be);
}

int r1_model_score_backward(struct r1_model *m, const float *dscores)
{
    if (m->frozen)
        return r1_err_set(R1_ESTATE, "model: backward on a frozen (forward-only) model");
    if (!m->have_forward || !m->fwd_score)
        return r1_err_set(R1_ESTATE, "model: score backward without a matching score forward");
    const struct r1_backend_ops *op = m->be->ops;
    void *cx = m->be->ctx;
    struct r1_model_acts *a = m->a;
    int B = m->cur_B, C = m->cfg.hidden_size;
    op->upload(cx, a->dlogp, dscores, (size_t)B * sizeof(float));
    float *dh = a->dtmp; /* (B,C) gradient of the gathered rows */
    op->matmul_backward(cx, dh, 0, m->dscore, NULL, a->dlogp, a->hrows, m->score, B, C, 1);
    backward_trunk(m, dh);
    m->have_forward = false;
    return r1_backend_check(m->be);
}

/* The gradient arena from `from` to its end is final for this backward. */
static void grads_ready(struct r1_model *m, const float *from)
{
    if (m->grad_hook)
        m->grad_hook(m->grad_hook_arg, (int64_t)(from - m->grad_mem));
}

/* From the gradient dh (n_rows,C) of the gathered final-norm rows (a->rows_host) down
 * through the final norm, every layer and the embedding; parameter grads +=. */
static void backward_trunk(struct r1_model *m, float *dh)
{
    const struct r1_model_config *c = &m->cfg;
    const struct r1_backend_ops *op = m->be->ops;
    void *cx = m->be->ctx;
    struct r1_model_acts *a = m->a;
    int B = m->cur_B, T = m->cur_T, N = B * T, C = c->hidden_size, H = c->n_heads;
    int KVH = c->n_kv_heads, D = c->head_dim, HD = H * D, KD = KVH * D, F = c->ffn_size;
    /* scatter the row gradients into dn (N,C); unscored rows get 0 */
    op->zero(cx, a->dn, (size_t)N * C * sizeof(float));
    move_rows(m, dh, a->dn, false);
    op->rmsnorm_backward(cx, a->dres, 0, a->dres16, m->dfinal_norm, a->dn, a->xout, m->final_norm,
                         a->rstdf, N, C);
    grads_ready(m, m->dfinal_norm); /* the final norm and the untied head or score after it */

    for (int l = c->n_layers - 1; l >= 0; l--) {
        struct r1_layer *W = &m->layers[l], *dW = &m->dlayers[l];
        struct r1_layer_acts *L = &a->l[l];
        if (m->recompute) /* the shared buffers again hold layer l (its output is not needed:
                           * dtmp is free at the top of each layer) */
            layer_forward(m, l, B, T, a->dtmp);
        /* dres = dL/d(layer output); in bf16 the matmuls' inputs are the forward's images
         * (their f32 sources are NULL there).  Sums of gradients (dn over the two or three
         * matmuls reading n2 or n1, dres over the residual branches) are added by the op
         * that makes the second term (din_add), with the bits of a separate add */
        const uint16_t *h16 = L->act16;
        mm_backward(m, a->dact, 0, dW->wdown, NULL, a->dres, a->dres16, L->act, h16, W->wdown, N,
                    F, C);
        op->swiglu_backward(cx, a->dgate, a->dup, a->dgate16, a->dup16, a->dact, L->gate, L->up,
                            (int64_t)N * F);
        h16 = L->n2_16;
        mm_backward(m, a->dn, 0, dW->wgate, NULL, a->dgate, a->dgate16, L->n2, h16, W->wgate, N,
                    C, F);
        mm_backward(m, a->dn, 1, dW->wup, NULL, a->dup, a->dup16, L->n2, h16, W->wup, N, C, F);
        op->rmsnorm_backward(cx, a->dres, 1, a->dres16, dW->mlp_norm, a->dn, L->h, W->mlp_norm,
                             L->rstd2, N, C); /* dres now dL/dh */
        h16 = L->att16;
        mm_backward(m, a->datt, 0, dW->wo, NULL, a->dres, a->dres16, L->att, h16, W->wo, N, HD,
                    C);
        if (m->precision == R1_BF16)
            op->attention16_backward(cx, a->dq, a->dk, a->dv, a->dv16, a->datt, L->att, L->lse,
                                     L->q, L->k, L->v, a->seg, B, T, H, KVH, D);
        else
            op->attention_backward(cx, a->dq, a->dk, a->dv, a->datt, L->att, L->lse, L->q, L->k,
                                   L->v, a->seg, B, T, H, KVH, D);
        /* in bf16 the rotation writes only the images the matmuls read */
        op->rope_backward(cx, a->dq, a->dq16, a->pos, m->rope_cos, m->rope_sin, N, H, D);
        op->rope_backward(cx, a->dk, a->dk16, a->pos, m->rope_cos, m->rope_sin, N, KVH, D);
        h16 = L->n1_16;
        mm_backward(m, a->dn, 0, dW->wq, dW->bq, a->dq, a->dq16, L->n1, h16, W->wq, N, C, HD);
        mm_backward(m, a->dn, 1, dW->wk, dW->bk, a->dk, a->dk16, L->n1, h16, W->wk, N, C, KD);
        mm_backward(m, a->dn, 1, dW->wv, dW->bv, a->dv, a->dv16, L->n1, h16, W->wv, N, C, KD);
        op->rmsnorm_backward(cx, a->dres, 1, a->dres16, dW->attn_norm, a->dn, L->x, W->attn_norm,
                             L->rstd1, N, C); /* dres now dL/dx */
        grads_ready(m, dW->attn_norm); /* layer l's tensors, attn_norm first */
    }
    op->embedding_backward(cx, m->dembed, a->dres, a->tokens, N, C);
    grads_ready(m, m->grad_mem);
}

void r1_model_set_grad_hook(struct r1_model *m, void (*hook)(void *arg, int64_t lo), void *arg)
{
    m->grad_hook = hook;
    m->grad_hook_arg = hook ? arg : NULL;
}

void r1_model_zero_grad(struct r1_model *m)
{
    if (!m->grad_mem)
        return;
    m->be->ops->zero(m->be->ctx, m->grad_mem, m->grads.cap);
}

int r1_model_ce_step(struct r1_model *m, const struct r1_batch *b, const float *w, double denom,
                     double *loss)
{
    if (!(denom > 0))
        return r1_err_set(R1_EINVAL, "model: cross-entropy denominator must be positive");
    if (m->frozen)
        return r1_err_set(R1_ESTATE, "model: backward on a frozen (forward-only) model");
    int rc = check_batch(m, b);
    if (rc)
        return rc;
    int N = b->B * b->T;
    /* each chunk of logits goes through the head's forward and backward at once instead
     * of being recomputed by a backward: one GEMM of the head less per step, the bits of
     * forward then backward */
    struct head_loss hl = {.ce_w = w, .ce_denom = denom};
    lm_pass(m, b, &hl);
    float *logp = m->a->host_logp;
    scatter_scored(m, logp, m->a->logp, N);
    double sum = 0;
    for (int i = 0; i < N; i++)
        sum -= (double)(b->targets[i] >= 0 ? w[i] : 0.0f) * logp[i];
    *loss = sum / denom;
    m->have_forward = false;
    if ((rc = r1_backend_check(m->be)))
        return rc;
    if (!isfinite(*loss)) /* the head's gradient is in; the caller drops the step */
        return r1_err_set(R1_ENUMERIC, "model: cross-entropy loss is %g", *loss);
    backward_trunk(m, m->a->dtmp);
    return r1_backend_check(m->be);
}

int r1_model_pg_step(struct r1_model *m, const struct r1_batch *b, const struct r1_pg_cfg *cfg,
                     const struct r1_pg_tokens *t, struct r1_pg_stats *st)
{
    if (m->frozen)
        return r1_err_set(R1_ESTATE, "model: backward on a frozen (forward-only) model");
    int rc = check_batch(m, b);
    if (rc)
        return rc;
    /* the loss of each chunk's log-probs is made on the backend as they are, and its
     * gradient goes through the head's backward at once: no logits recomputed, no
     * log-probs to the host and gradients back; the bits of forward, loss, backward */
    struct head_loss hl = {.pg = cfg, .pg_t = t, .pg_st = st};
    lm_pass(m, b, &hl);
    m->be->ops->download(m->be->ctx, st, m->a->pg_stats, sizeof(*st));
    m->have_forward = false;
    if ((rc = r1_backend_check(m->be)))
        return rc;
    if (!isfinite(st->loss)) /* the head's gradient is in; the caller drops the step */
        return r1_err_set(R1_ENUMERIC, "model: policy-gradient loss is %g", st->loss);
    backward_trunk(m, m->a->dtmp);
    return r1_backend_check(m->be);
}
