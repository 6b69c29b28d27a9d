/* kvcache.c - the model's inference path over a KV cache (see model.h).
 *
 * Shapes: N new tokens in a step, C hidden, H/KVH heads, D head dim, F FFN,
 * V vocab, S slots, L max positions per slot.  Same math as the training
 * forward in model.c, but attention reads keys/values from the cache.
 * Generation weights: the model's f32 matrices, or bf16 copies the cache holds
 * (r1_kv_cache_set_weights) so the model and its training never see them.  Keys and
 * values: f32, or bf16 for a model in precision bf16 (as vLLM keeps a bf16 model's cache),
 * which halves the cache and the bytes a decode step reads from it. */
#include <stdlib.h>
#include <string.h>

#include "core/err.h"
#include "core/model.h"

static void layout(struct r1_kv_cache *c, const struct r1_model_config *cfg)
{
    struct r1_arena *a = &c->arena;
    int64_t NT = c->max_tokens, C = cfg->hidden_size, HD = (int64_t)cfg->n_heads * cfg->head_dim;
    int64_t KD = (int64_t)cfg->n_kv_heads * cfg->head_dim, F = cfg->ffn_size;
    int64_t per_layer = (int64_t)c->slots * c->max_len * KD;
#define F32(n) ((float *)r1_arena_take_bytes(a, (size_t)(n) * sizeof(float)))
#define I32(n) ((int32_t *)r1_arena_take_bytes(a, (size_t)(n) * sizeof(int32_t)))
#define U16(n) ((uint16_t *)r1_arena_take_bytes(a, (size_t)(n) * sizeof(uint16_t)))
    for (int l = 0; l < c->n_layers; l++) {
        if (c->kv16) {
            c->k16[l] = U16(per_layer);
            c->v16[l] = U16(per_layer);
        } else {
            c->k[l] = F32(per_layer);
            c->v[l] = F32(per_layer);
        }
    }
#undef U16
    c->tokens = I32(NT);
    c->slot = I32(NT);
    c->pos = I32(NT);
    c->x = F32(NT * C);
    c->n = F32(NT * C);
    c->tmp = F32(NT * C);
    c->rstd = F32(NT);
    c->q = F32(NT * HD);
    c->att = F32(NT * HD);
    c->kn = F32(NT * KD);
    c->vn = F32(NT * KD);
    c->gate = F32(NT * F);
    c->up = F32(NT * F);
    c->act = F32(NT * F);
    c->rows = F32(NT * C);
    c->logits = F32((int64_t)c->logit_rows * cfg->vocab_size);
    c->u = F32(c->logit_rows);
    c->next = I32(c->logit_rows);
    c->next_logprob = F32(c->logit_rows);
#undef F32
#undef I32
}

int r1_kv_cache_create(struct r1_kv_cache **out, const struct r1_model *m, int slots,
                       int max_len, int max_tokens)
{
    if (slots <= 0 || max_len <= 0 || max_tokens <= 0)
        return r1_err_set(R1_EINVAL, "kv cache: slots (%d), max_len (%d) and max_tokens (%d) "
                          "must be positive", slots, max_len, max_tokens);
    if (max_len > m->cfg.max_seq_len)
        return r1_err_set(R1_EINVAL, "kv cache: max_len %d exceeds the model's max_seq_len %d",
                          max_len, m->cfg.max_seq_len);
    struct r1_kv_cache *c = calloc(1, sizeof(*c));
    if (!c)
        return r1_err_set(R1_ENOMEM, "kv cache: out of host memory");
    c->be = m->be;
    c->slots = slots;
    c->max_len = max_len;
    c->max_tokens = max_tokens;
    c->n_layers = m->cfg.n_layers;
    c->vocab_size = m->cfg.vocab_size;
    c->logit_rows = slots < max_tokens ? slots : max_tokens;
    const struct r1_backend_ops *op = m->be->ops;
    c->kv16 = m->precision == R1_BF16 && op->kv_store16 && op->attention_cached16;
    c->k = calloc((size_t)c->n_layers, sizeof(float *));
    c->v = calloc((size_t)c->n_layers, sizeof(float *));
    c->k16 = calloc((size_t)c->n_layers, sizeof(uint16_t *));
    c->v16 = calloc((size_t)c->n_layers, sizeof(uint16_t *));
    if (!c->k || !c->v || !c->k16 || !c->v16) {
        r1_kv_cache_free(c);
        return r1_err_set(R1_ENOMEM, "kv cache: out of host memory");
    }
    layout(c, &m->cfg);
    int rc = r1_arena_commit(&c->arena, m->be);
    if (rc) {
        r1_kv_cache_free(c);
        return r1_err_wrap(rc, "kv cache for %d slots x %d positions", slots, max_len);
    }
    layout(c, &m->cfg);
    if (op->graph_begin) { /* graphs of decode-only steps, by precision and token count */
        for (int d = 0; d < 2; d++)
            if (!(c->graphs[d] = calloc((size_t)c->logit_rows + 1, sizeof(void *)))) {
                r1_kv_cache_free(c);
                return r1_err_set(R1_ENOMEM, "kv cache: out of host memory");
            }
        c->use_graphs = 1;
    }
    if (op->reserve) { /* the ops' scratch for decode steps, so none grows while sampling */
        const struct r1_model_config *cf = &m->cfg;
        int64_t HD = (int64_t)cf->n_heads * cf->head_dim;
        struct r1_op_sizes s = {0};
        s.rows = max_tokens;
        s.H = cf->n_heads;
        s.D = cf->head_dim;
        s.cache_len = max_len;
        s.hidden = cf->hidden_size;
        s.width = cf->hidden_size > HD ? cf->hidden_size : HD;
        s.width = s.width > cf->ffn_size ? s.width : cf->ffn_size;
        s.vocab = cf->vocab_size;
        s.head_rows = c->logit_rows;
        s.bf16_weights = op->matmul_forward_bf16 != NULL;
        size_t held;
        if ((rc = op->reserve(m->be->ctx, &s, &held))) {
            r1_kv_cache_free(c);
            return r1_err_wrap(rc, "kv cache: the backend's scratch for %d-token steps",
                               max_tokens);
        }
    }
    *out = c;
    return 0;
}

/* bf16 copies of one layer's matrices, in this order, then the head */
static int64_t bf16_layer_elems(const struct r1_model_config *cfg)
{
    int64_t C = cfg->hidden_size, HD = (int64_t)cfg->n_heads * cfg->head_dim;
    int64_t KD = (int64_t)cfg->n_kv_heads * cfg->head_dim, F = cfg->ffn_size;
    return HD * C + 2 * KD * C + C * HD + 3 * F * C;
}

/* frees the recorded graphs of precision d (their weight pointers changed) */
static void drop_graphs(struct r1_kv_cache *c, int d)
{
    for (int n = 0; c->graphs[d] && n <= c->logit_rows; n++)
        if (c->graphs[d][n]) {
            c->be->ops->graph_free(c->be->ctx, c->graphs[d][n]);
            c->graphs[d][n] = NULL;
        }
}

int r1_kv_cache_set_weights(struct r1_kv_cache *c, struct r1_model *m, enum r1_dtype dt)
{
    const struct r1_model_config *cfg = &m->cfg;
    const struct r1_backend_ops *op = c->be->ops;
    void *cx = c->be->ctx;
    if (dt == R1_F32) {
        c->wdtype = R1_F32;
        return 0;
    }
    if (dt != R1_BF16)
        return r1_err_set(R1_EINVAL, "kv cache: generation weights are f32 or bf16, not %s",
                          r1_dtype_name(dt));
    if (!op->matmul_forward_bf16 || !op->convert_bf16)
        return r1_err_set(R1_EINVAL, "kv cache: the %s backend has no bf16 matmul; generate "
                          "with f32 weights", op->name);
    int64_t C = cfg->hidden_size, HD = (int64_t)cfg->n_heads * cfg->head_dim;
    int64_t KD = (int64_t)cfg->n_kv_heads * cfg->head_dim, F = cfg->ffn_size;
    int64_t V = cfg->vocab_size, per_layer = bf16_layer_elems(cfg);
    if (!c->wl && !(c->wl = calloc((size_t)c->n_layers, sizeof(*c->wl))))
        return r1_err_set(R1_ENOMEM, "kv cache: out of host memory");
    const uint16_t *before = c->lm_head16; /* graphs recorded with the views in use */
    /* a model that trains in bf16 lends its copy (no second one), else the cache's own */
    int lent = m->precision == R1_BF16 && m->w16_mem;
    if (lent) {
        for (int l = 0; l < c->n_layers; l++) {
            const struct r1_layer *s = &m->layers[l];
            struct r1_kv_layer_bf16 *w = &c->wl[l];
            w->wq = r1_model_param16(m, s->wq), w->wk = r1_model_param16(m, s->wk);
            w->wv = r1_model_param16(m, s->wv), w->wo = r1_model_param16(m, s->wo);
            w->wgate = r1_model_param16(m, s->wgate), w->wup = r1_model_param16(m, s->wup);
            w->wdown = r1_model_param16(m, s->wdown);
        }
        c->lm_head16 = r1_model_param16(m, m->lm_head);
    } else {
        if (!c->wmem) {
            size_t bytes = ((size_t)per_layer * c->n_layers + (size_t)V * C) * sizeof(uint16_t);
            if (!(c->wmem = op->alloc(cx, bytes)))
                return r1_err_set(R1_ENOMEM, "kv cache: cannot allocate %zu MiB of bf16 "
                                  "generation weights; generate with f32 weights", bytes >> 20);
        }
        uint16_t *p = c->wmem; /* the cache's own copies, in this order, then the head */
        for (int l = 0; l < c->n_layers; l++) {
            struct r1_kv_layer_bf16 *w = &c->wl[l];
            w->wq = p, p += HD * C;
            w->wk = p, p += KD * C;
            w->wv = p, p += KD * C;
            w->wo = p, p += C * HD;
            w->wgate = p, p += F * C;
            w->wup = p, p += F * C;
            w->wdown = p, p += C * F;
        }
        c->lm_head16 = p;
    }
    if (before && before != c->lm_head16)
        drop_graphs(c, 1);
    c->wdtype = R1_BF16;
    if (lent) { /* made current, as the model's next forward would */
        r1_model_sync16(m);
        return 0;
    }
    for (int l = 0; l < c->n_layers; l++) {
        const struct r1_layer *s = &m->layers[l];
        const struct r1_kv_layer_bf16 *w = &c->wl[l];
        op->convert_bf16(cx, w->wq, s->wq, HD * C);
        op->convert_bf16(cx, w->wk, s->wk, KD * C);
        op->convert_bf16(cx, w->wv, s->wv, KD * C);
        op->convert_bf16(cx, w->wo, s->wo, C * HD);
        op->convert_bf16(cx, w->wgate, s->wgate, F * C);
        op->convert_bf16(cx, w->wup, s->wup, F * C);
        op->convert_bf16(cx, w->wdown, s->wdown, C * F);
    }
    op->convert_bf16(cx, c->lm_head16, m->lm_head, V * C);
    return 0;
}

void r1_kv_cache_free(struct r1_kv_cache *c)
{
    if (!c)
        return;
    for (int d = 0; d < 2; d++) {
        drop_graphs(c, d);
        free(c->graphs[d]);
    }
    if (c->wmem)
        c->be->ops->free(c->be->ctx, c->wmem);
    free(c->wl);
    r1_arena_release(&c->arena);
    free(c->k);
    free(c->k16);
    free(c->v16);
    free(c->v);
    free(c);
}

/* out (M,N) = in (M,K) · wᵀ + bias with the f32 matrix w32 or, in bf16 mode, w16 */
static void matmul(const struct r1_kv_cache *c, float *out, const float *in, const float *w32,
                   const uint16_t *w16, const float *bias, const float *res, int M, int K, int N)
{
    const struct r1_backend_ops *op = c->be->ops;
    if (c->wdtype == R1_BF16)
        op->matmul_forward_bf16(c->be->ctx, out, in, w16, bias, res, M, K, N);
    else
        op->matmul_forward(c->be->ctx, out, in, w32, bias, res, M, K, N);
}

/* logits rows [r0, r0 + n) of the final-normed output rows (c->rows) into c->logits */
static void decode_head(struct r1_model *m, struct r1_kv_cache *c, int r0, int n)
{
    int C = m->cfg.hidden_size;
    matmul(c, c->logits, c->rows + (size_t)r0 * C, m->lm_head, c->lm_head16, NULL, NULL, n, C,
           m->cfg.vocab_size);
}

/* The ops of a step of N tokens whose tokens, slots and positions are on the backend: the
 * final-normed rows out_idx (n_out), or rows 0..N-1 when out_idx is NULL (a decode-only
 * step: no gather, what a graph records), and their logits (n_out, V) when they fit in
 * c->logits (else decode_head in chunks). */
static void decode_ops(struct r1_model *m, struct r1_kv_cache *c, int N, int n_out,
                       const int32_t *out_idx)
{
    const struct r1_model_config *cfg = &m->cfg;
    const struct r1_backend_ops *op = m->be->ops;
    void *cx = m->be->ctx;
    int C = cfg->hidden_size, H = cfg->n_heads, KVH = cfg->n_kv_heads, D = cfg->head_dim;
    int HD = H * D, KD = KVH * D, F = cfg->ffn_size, L = c->max_len;
    op->embedding_forward(cx, c->x, c->tokens, m->embed, N, C);
    const struct r1_kv_layer_bf16 none = {0};
    for (int l = 0; l < cfg->n_layers; l++) {
        const struct r1_layer *W = &m->layers[l];
        const struct r1_kv_layer_bf16 *B = c->wl ? &c->wl[l] : &none;
        op->rmsnorm_forward(cx, c->n, NULL, c->rstd, c->x, W->attn_norm, N, C, cfg->rms_eps);
        matmul(c, c->q, c->n, W->wq, B->wq, W->bq, NULL, N, C, HD);
        matmul(c, c->kn, c->n, W->wk, B->wk, W->bk, NULL, N, C, KD);
        matmul(c, c->vn, c->n, W->wv, B->wv, W->bv, NULL, N, C, KD);
        op->rope_forward(cx, c->q, c->pos, m->rope_cos, m->rope_sin, N, H, D);
        op->rope_forward(cx, c->kn, c->pos, m->rope_cos, m->rope_sin, N, KVH, D);
        if (c->kv16) {
            op->kv_store16(cx, c->k16[l], c->v16[l], c->kn, c->vn, c->slot, c->pos, N, KVH, D, L);
            op->attention_cached16(cx, c->att, c->q, c->k16[l], c->v16[l], c->slot, c->pos, N, H,
                                   KVH, D, L);
        } else {
            op->kv_store(cx, c->k[l], c->v[l], c->kn, c->vn, c->slot, c->pos, N, KVH, D, L);
            op->attention_cached(cx, c->att, c->q, c->k[l], c->v[l], c->slot, c->pos, N, H, KVH,
                                 D, L);
        }
        /* the residual stream moves to tmp and back, added by the two matmuls that end the
         * branches (their res): x is in c->x again after every layer */
        matmul(c, c->tmp, c->att, W->wo, B->wo, NULL, c->x, N, HD, C);
        op->rmsnorm_forward(cx, c->n, NULL, c->rstd, c->tmp, W->mlp_norm, N, C, cfg->rms_eps);
        matmul(c, c->gate, c->n, W->wgate, B->wgate, NULL, NULL, N, C, F);
        matmul(c, c->up, c->n, W->wup, B->wup, NULL, NULL, N, C, F);
        op->swiglu_forward(cx, c->act, NULL, c->gate, c->up, (int64_t)N * F);
        matmul(c, c->x, c->act, W->wdown, B->wdown, NULL, c->tmp, N, F, C);
    }
    if (n_out == 0)
        return;
    const float *last = c->x;
    if (out_idx) {
        size_t rb = (size_t)C * sizeof(float);
        for (int i = 0; i < n_out; i++)
            op->copy(cx, (char *)c->tmp + (size_t)i * rb, (char *)c->x + (size_t)out_idx[i] * rb,
                     rb);
        last = c->tmp;
    }
    op->rmsnorm_forward(cx, c->rows, NULL, c->rstd, last, m->final_norm, n_out, C, cfg->rms_eps);
    if (n_out <= c->logit_rows)
        decode_head(m, c, 0, n_out);
}

/* A decode-only step of N tokens (one per slot, out_idx 0..N-1) through the graph recorded
 * for N tokens and the current weights' precision, recorded on first use */
static int decode_graph(struct r1_model *m, struct r1_kv_cache *c, int N)
{
    const struct r1_backend_ops *op = m->be->ops;
    void **g = &c->graphs[c->wdtype == R1_BF16][N];
    if (!*g) {
        op->graph_begin(m->be->ctx);
        decode_ops(m, c, N, N, NULL);
        *g = op->graph_end(m->be->ctx);
        if (!*g) {
            int rc = r1_backend_check(m->be);
            return rc ? rc : r1_err_set(R1_EIO, "decode: recording the graph of a %d-token "
                                        "step failed", N);
        }
    }
    op->graph_launch(m->be->ctx, *g);
    return 0;
}

int r1_kv_cache_set_graphs(struct r1_kv_cache *c, int on)
{
    if (on && !c->graphs[0])
        return r1_err_set(R1_EINVAL, "kv cache: backend %s records no graphs (no graph ops)",
                          c->be->ops->name);
    c->use_graphs = on;
    return 0;
}

int r1_model_decode(struct r1_model *m, struct r1_kv_cache *c, int N, const int32_t *tokens,
                    const int32_t *slot, const int32_t *pos, int n_out, const int32_t *out_idx,
                    float *logits)
{
    const struct r1_model_config *cfg = &m->cfg;
    const struct r1_backend_ops *op = m->be->ops;
    void *cx = m->be->ctx;
    int V = cfg->vocab_size, L = c->max_len;

    if (N <= 0 || N > c->max_tokens)
        return r1_err_set(R1_EINVAL, "decode: %d tokens in a step; the cache takes 1..%d", N,
                          c->max_tokens);
    for (int i = 0; i < N; i++) {
        if (tokens[i] < 0 || tokens[i] >= V)
            return r1_err_set(R1_EINVAL, "decode: token id %d is not in [0, %d)", tokens[i], V);
        if (slot[i] < 0 || slot[i] >= c->slots || pos[i] < 0 || pos[i] >= L)
            return r1_err_set(R1_EINVAL, "decode: slot %d position %d outside the cache "
                              "(%d slots x %d positions)", slot[i], pos[i], c->slots, L);
    }
    for (int i = 0; i < n_out; i++)
        if (out_idx[i] < 0 || out_idx[i] >= N)
            return r1_err_set(R1_EINVAL, "decode: output index %d not in [0, %d)", out_idx[i], N);
    if (!logits && n_out > c->logit_rows)
        return r1_err_set(R1_EINVAL, "decode: %d rows of logits to keep on the backend; the "
                          "cache holds %d (one per slot)", n_out, c->logit_rows);

    c->n_logits = 0;
    op->upload(cx, c->tokens, tokens, (size_t)N * sizeof(int32_t));
    op->upload(cx, c->slot, slot, (size_t)N * sizeof(int32_t));
    op->upload(cx, c->pos, pos, (size_t)N * sizeof(int32_t));
    int every = n_out == N; /* the output rows are 0..N-1: no gather */
    for (int i = 0; i < n_out && every; i++)
        every = out_idx[i] == i;
    if (every && c->use_graphs && N <= c->logit_rows) {
        int rc = decode_graph(m, c, N);
        if (rc)
            return rc;
    } else {
        decode_ops(m, c, N, n_out, every ? NULL : out_idx);
    }
    if (n_out == 0)
        return r1_backend_check(m->be);
    if (n_out <= c->logit_rows) {
        c->n_logits = n_out;
        if (!logits)
            return 0;
        op->download(cx, logits, c->logits, (size_t)n_out * V * sizeof(float));
        return r1_backend_check(m->be);
    }
    /* more rows than c->logits holds (scoring a prefill): the head in chunks, each
     * downloaded before the next overwrites it */
    for (int r0 = 0; r0 < n_out; r0 += c->logit_rows) {
        int n = n_out - r0 < c->logit_rows ? n_out - r0 : c->logit_rows;
        decode_head(m, c, r0, n);
        op->download(cx, logits + (size_t)r0 * V, c->logits, (size_t)n * V * sizeof(float));
    }
    return r1_backend_check(m->be);
}

int r1_kv_cache_sample(struct r1_kv_cache *c, const struct r1_sampling *s, int n_out, int V,
                       const float *u, int32_t *tokens, float *logprobs)
{
    const struct r1_backend_ops *op = c->be->ops;
    void *cx = c->be->ctx;
    if (!op->sample)
        return r1_err_set(R1_EINVAL, "kv cache: backend %s cannot sample (no sample op); "
                          "download the logits and sample on the host", op->name);
    if (n_out <= 0 || n_out > c->n_logits)
        return r1_err_set(R1_EINVAL, "kv cache: %d rows to sample; the last decode left %d",
                          n_out, c->n_logits);
    if (V <= 0 || V > c->vocab_size)
        return r1_err_set(R1_EINVAL, "kv cache: sampling among %d ids of a %d-token vocabulary",
                          V, c->vocab_size);
    op->upload(cx, c->u, u, (size_t)n_out * sizeof(float));
    op->sample(cx, c->next, c->next_logprob, c->logits, c->vocab_size, c->u, n_out, V, s);
    op->download(cx, tokens, c->next, (size_t)n_out * sizeof(int32_t));
    op->download(cx, logprobs, c->next_logprob, (size_t)n_out * sizeof(float));
    return r1_backend_check(c->be);
}
