/* model.h - a Llama / Qwen2 / SmolLM2-style decoder: forward, backward, loss heads.
 *
 * Layout per layer (pre-norm):  h = x + Wo·attn(rope(Wq·n1), rope(Wk·n1), Wv·n1),
 * n1 = rmsnorm(x);  y = h + Wd·(silu(Wg·n2) ⊙ Wu·n2), n2 = rmsnorm(h).
 * Final rmsnorm, then the LM head (tied to the embedding or separate).
 *
 * Memory: parameters and gradients are one backend allocation each (arenas);
 * activations are one arena sized by r1_model_reserve() for the largest batch.
 * The forward/backward calls never allocate.
 *
 * Heads: the forward returns per-token log-probabilities of given targets and
 * per-token entropy; the backward takes dL/dlogp and dL/dentropy per token, so
 * cross-entropy (dlogp = -w/denominator) and policy-gradient losses share one
 * path.  Logits are computed in chunks of R1_MODEL_HEAD_CHUNK rows and recomputed
 * in the backward: at most one chunk of (rows × V) logits exists at a time.  Cross-entropy
 * (r1_model_ce_step), whose dL/dlogp is known before the forward, and the policy-gradient
 * loss (r1_model_pg_step), whose dL/dlogp of a token needs only that token's log-prob, take
 * each chunk through the head's forward and backward at once and recompute none.
 *
 * Score head (num_labels = 1, a reward model as transformers'
 * *ForSequenceClassification): one more parameter "score.weight" (1, C) and a
 * scalar per row, score · final_norm(h)[b, last[b]].  Such a model has no separate
 * lm_head tensor: lm_head points at the embedding (its logits are not trained).
 * The score calls share the layers' forward/backward with the LM head. */
#ifndef R1_MODEL_H
#define R1_MODEL_H

#include <stdbool.h>
#include <stdint.h>

#include "core/backend.h"
#include "core/tensor.h"

#define R1_MODEL_HEAD_CHUNK 256

enum r1_arch { R1_ARCH_LLAMA = 0, R1_ARCH_QWEN2, R1_ARCH_MISTRAL };

struct r1_model_config {
    enum r1_arch arch;
    int vocab_size;
    int hidden_size;
    int n_layers;
    int n_heads;
    int n_kv_heads;
    int head_dim;
    int ffn_size;
    int max_seq_len;
    float rms_eps;
    float rope_theta;
    bool qkv_bias;
    bool tie_embeddings;
    int32_t bos_id, eos_id; /* -1 when absent */
    int32_t pad_id;         /* -1 when absent; written as pad_token_id (score models need it) */
    int num_labels;         /* 0: causal LM; 1: score head (reward model) */
};

/* Named shapes (R1_MODEL_PRESETS, for messages and help): "tiny" (byte-level, a few
 * hundred k parameters), "small" and the real architectures.  R1_EINVAL for an unknown name. */
#define R1_MODEL_PRESETS "tiny, small, smollm2-135m, qwen2.5-0.5b, qwen2.5-1.5b"

int r1_model_config_preset(struct r1_model_config *out, const char *name);
/* Checks every field; the message names the field, its value and the valid range. */
int r1_model_config_check(const struct r1_model_config *c);
int64_t r1_model_config_n_params(const struct r1_model_config *c);

struct r1_param {
    char name[96];   /* Hugging Face name, e.g. model.layers.3.self_attn.q_proj.weight */
    struct r1_tensor w;  /* view into the parameter arena */
    struct r1_tensor g;  /* same shape, in the gradient arena */
    bool decay;      /* AdamW weight decay applies (matrices; not norms, biases) */
};

struct r1_layer {
    float *attn_norm, *wq, *wk, *wv, *bq, *bk, *bv, *wo;
    float *mlp_norm, *wgate, *wup, *wdown;
};

struct r1_model_acts; /* activation views, model.c */

struct r1_model {
    struct r1_model_config cfg;
    struct r1_backend *be;    /* borrowed */
    struct r1_arena params, grads, acts;
    int n_tensors;
    struct r1_param *tensors;  /* n_tensors entries, HF order */
    int64_t n_params;
    float *param_mem, *grad_mem; /* the two single allocations (backend memory) */
    /* views into param_mem / grad_mem */
    float *embed, *final_norm, *lm_head; /* lm_head == embed when tied */
    struct r1_layer *layers, *dlayers;
    float *dembed, *dfinal_norm, *dlm_head;
    float *score, *dscore; /* (1,C) score head when cfg.num_labels == 1, else NULL */
    float *rope_cos, *rope_sin; /* (max_seq_len, head_dim/2), in acts-independent memory */
    struct r1_model_acts *a;
    int max_B, max_T; /* activation capacity from r1_model_reserve */
    /* r1_model_forward/backward score softmax(logit_scale · logits): 1/temperature when an
     * RL loss must see the distribution completions were sampled from; 1 by default */
    float logit_scale;
    int cur_B, cur_T; /* shape of the last forward */
    bool have_forward;
    bool fwd_score;   /* the last forward ran the score head (not the LM head) */
    bool frozen;      /* r1_model_create_frozen: forward passes only */
    bool recompute;   /* r1_model_set_recompute: activations recomputed in the backward */
    /* r1_model_set_precision: R1_F32 or R1_BF16.  In bf16, w16 mirrors the parameter
     * arena in bf16 (element i of w16_mem is bf16(param_mem[i])); the matmuls read it.
     * w16_fresh: it matches the parameters (r1_model_sync16, r1_model_params_changed) */
    enum r1_dtype precision;
    struct r1_arena w16;
    uint16_t *w16_mem;
    bool w16_fresh;
    /* r1_model_set_grad_hook */
    void (*grad_hook)(void *arg, int64_t lo);
    void *grad_hook_arg;
};

/* A batch in host memory.  Row b, column t.  tokens (B,T) inputs; pos (B,T)
 * position ids for RoPE; seg (B,T) segment ids (-1 = padding) for packing;
 * targets (B,T) the token to score at each position (-1 = none). */
struct r1_batch {
    int B, T;
    const int32_t *tokens, *pos, *seg, *targets;
};

int r1_model_create(struct r1_model **out, const struct r1_model_config *cfg,
                    struct r1_backend *be);
/* A model for forward passes only (a frozen reference model): no gradient memory, and
 * r1_model_reserve lays out two layers' activations that the layers use in turn, instead
 * of one set per layer kept for backward.  Forward results are bitwise those of a model
 * made by r1_model_create with the same weights; the backward passes and
 * r1_model_ce_step return R1_ESTATE. */
int r1_model_create_frozen(struct r1_model **out, const struct r1_model_config *cfg,
                           struct r1_backend *be);
void r1_model_free(struct r1_model *m);
/* Normal(0, 0.02) matrices (output projections scaled by 1/sqrt(2·layers)), norms 1,
 * biases 0; element i of tensor k is r1_rng_normal_at(seed, R1_STREAM_INIT + k, i). */
int r1_model_init_weights(struct r1_model *m, uint64_t seed);
/* The score head alone: Normal(0, 1/sqrt(C+1)), element i = r1_rng_normal_at(seed,
 * R1_STREAM_INIT + k, i) with k the tensor's index (as r1_model_init_weights does).
 * R1_EINVAL when the model has no score head. */
int r1_model_init_score(struct r1_model *m, uint64_t seed);
/* Copies every tensor of dst that src has under the same name and shape (host round
 * trip); *n_copied (may be NULL) gets the count.  R1_EINVAL naming the tensor when a
 * name matches with another shape. */
int r1_model_copy_weights(struct r1_model *dst, const struct r1_model *src, int *n_copied);
/* True when m has a score head (cfg.num_labels == 1). */
bool r1_model_has_score_head(const struct r1_model *m);
/* Activation recomputation (gradient checkpointing): with on, r1_model_reserve keeps only
 * each layer's input through the forward, and the backward runs each layer's forward again
 * (into one shared set of layer buffers) before its backward.  Activation memory falls from
 * ~L sets of layer buffers to L inputs plus one set, for one more forward per step; every
 * result is bitwise the same (the ops are deterministic).  Call before r1_model_reserve (a
 * change drops the reserved activations).  A frozen model ignores it (it keeps no
 * activations for a backward). */
void r1_model_set_recompute(struct r1_model *m, bool on);
/* Precision of the matmuls (every projection, attention's products and the LM head; the
 * score head stays f32):
 * R1_F32 (the default), or R1_BF16, mixed precision as PyTorch's bf16 autocast: each
 * matmul takes bf16 roundings (nearest even) of its input and of the weights, and in the
 * backward of its output gradient, and sums their products in f32 into f32 results.  The
 * parameters stay f32 (the master weights the optimizer updates and checkpoints save);
 * their bf16 copy is written by r1_optim_step with them (in the same pass) and remade
 * from them before a forward or a generation when anything else wrote them (the model's
 * loaders and r1_model_upload_param say so; other code calls r1_model_params_changed).
 * Attention rounds q, k, v, dout and its probabilities and dS where they enter products
 * (backend.h attention16_*); its softmax, norms, SwiGLU, the loss heads and every gradient
 * sum stay f32 (the norms and SwiGLU write only the bf16 images of their results, which
 * the matmuls read).  Costs a copy of the parameters in bf16 and one bf16 buffer per
 * operand in the activations; buys tensor-core GEMMs on a GPU (on the CPU the bf16
 * operands are widened to f32 for SGEMM: the reference, not faster).  R1_EINVAL for
 * another dtype or a backend without the bf16 ops, R1_ENOMEM when the copy does not fit.
 * Drops the reserved activations, as r1_model_set_recompute does. */
int r1_model_set_precision(struct r1_model *m, enum r1_dtype dt);
/* In precision bf16: the bf16 copy of parameter w (a pointer into the parameter arena),
 * a view into w16_mem. */
uint16_t *r1_model_param16(const struct r1_model *m, const float *w);
/* Allocates activations for batches up to B×T (once; again only to grow). */
int r1_model_reserve(struct r1_model *m, int B, int T);
const struct r1_param *r1_model_find(const struct r1_model *m, const char *name);

/* Forward: logp (B,T) and entropy (B,T) (may be NULL) to host.  Positions with
 * target < 0 get logp 0. */
int r1_model_forward(struct r1_model *m, const struct r1_batch *b, float *logp, float *entropy);
/* Backward of the last forward: host dlogp (B,T), dentropy (B,T) or NULL.
 * Parameter gradients accumulate (+=) until r1_model_zero_grad. */
int r1_model_backward(struct r1_model *m, const float *dlogp, const float *dentropy);
void r1_model_zero_grad(struct r1_model *m);
/* Gradient readiness, for sums that overlap the backward (core/dist.h r1_grad_sync): while
 * set, every backward (LM or score head) calls hook(arg, lo) each time the gradient arena's
 * floats [lo, end) have received their last contribution of that backward: once after the
 * head and final norm, once per layer from the last to the first, and lo = 0 after the
 * embedding.  lo only decreases within a backward, and those floats are not written again
 * by it.  The hook runs on the calling thread between ops (on a backend with queued work,
 * before that work has finished: see r1_backend_ops.host_memory).  NULL removes it. */
void r1_model_set_grad_hook(struct r1_model *m, void (*hook)(void *arg, int64_t lo), void *arg);

/* Masked cross-entropy: loss = -Σ w·logp / denom (w (B,T) host per-token weights;
 * denom > 0, e.g. the weight sum of the whole accumulated batch).  Runs forward and
 * backward (grads +=) and returns the loss in *loss: bitwise r1_model_forward then
 * r1_model_backward with dlogp = -w/denom, without recomputing the logits (the head's
 * backward runs with its forward, chunk by chunk).  NaN/Inf → R1_ENUMERIC, with the head's
 * gradient already added (drop the step). */
int r1_model_ce_step(struct r1_model *m, const struct r1_batch *b, const float *w, double denom,
                     double *loss);

/* Per-token inputs of r1_model_pg_step, host (B,T) in batch order; only the scored
 * positions (target >= 0) are read. */
struct r1_pg_tokens {
    const float *old_logp; /* under the policy that generated; NULL: on-policy (ρ = 1) */
    const float *ref_logp; /* under the reference; NULL: no KL term */
    const float *adv;      /* the token's advantage */
    const float *weight;   /* the token's aggregation weight; 0: not in the loss */
};

/* Policy-gradient step (GRPO, PPO's clipped surrogate): the forward, the token loss of
 * r1_backend_ops.pg_loss under cfg on each chunk of the head's log-probs and entropies as
 * they are made, the head's backward with it, then the layers' (grads +=).  *st += the
 * loss's sums over the scored positions in batch order.  Bitwise r1_model_forward, pg_loss
 * on its log-probs and entropies, then r1_model_backward with its gradients (dentropy only
 * when entropy_coef != 0), without recomputing the logits.  A non-finite st->loss →
 * R1_ENUMERIC with the head's gradient already added (drop the step). */
int r1_model_pg_step(struct r1_model *m, const struct r1_batch *b, const struct r1_pg_cfg *cfg,
                     const struct r1_pg_tokens *t, struct r1_pg_stats *st);

/* Score head forward: scores (B) host, scores[b] = score · final_norm(h)[b, last[b]];
 * last (B) host positions in [0, T) (the token each row is scored at).  b->targets
 * may be NULL.  R1_EINVAL without a score head or with a bad last[b]. */
int r1_model_score_forward(struct r1_model *m, const struct r1_batch *b, const int32_t *last,
                           float *scores);
/* Backward of the last r1_model_score_forward: host dscores (B) = dL/dscores.
 * Parameter gradients accumulate (+=) as in r1_model_backward. */
int r1_model_score_backward(struct r1_model *m, const float *dscores);

/* Logits of selected rows for inference without a KV cache (tests, scoring):
 * runs the forward and writes logits (n_rows, V) to host for rows (b·T + t) in rows. */
int r1_model_logits(struct r1_model *m, const struct r1_batch *b, const int32_t *rows,
                    int n_rows, float *logits);

/* ---- inference with a KV cache (core/kvcache.c) ---------------------------
 * A cache holds keys and values of `slots` sequences of up to max_len
 * positions, plus activations for steps of up to max_tokens new tokens (one
 * arena, allocated once).  A step takes N tokens, each with its slot and
 * position: prefill (many tokens of one slot) and decode (one token per slot)
 * mix freely, which is what continuous batching needs. */
struct r1_kv_cache {
    struct r1_backend *be;
    struct r1_arena arena;
    int slots, max_len, max_tokens, n_layers;
    /* per layer: (slots, max_len, KVH, D) keys and values, f32 (k, v) or, for a model that
     * was in precision bf16 when the cache was made (kv16), bf16 bit patterns (k16, v16) */
    float **k, **v;
    uint16_t **k16, **v16;
    int kv16;
    int32_t *tokens, *slot, *pos;/* (max_tokens) backend copies */
    float *x, *n, *q, *kn, *vn, *att, *tmp; /* (max_tokens, ·) step activations */
    float *gate, *up, *act, *rstd;
    float *rows, *logits;        /* (max_tokens, C), (logit_rows, V) */
    int logit_rows;              /* min(slots, max_tokens): a step's next-token rows */
    int vocab_size, n_logits;    /* V; rows of logits the last decode left */
    float *u;                    /* (logit_rows) r1_kv_cache_sample's uniforms */
    int32_t *next;               /* (logit_rows) and the tokens it drew */
    float *next_logprob;         /* (logit_rows) and their log-probabilities */
    /* generation weights (r1_kv_cache_set_weights): R1_F32 decodes with the model's
     * matrices; R1_BF16 with wl / lm_head16: views of the model's own bf16 copy when it
     * is in precision bf16, else bf16 copies in one backend allocation (wmem, made on the
     * first such request and kept) */
    enum r1_dtype wdtype;
    uint16_t *wmem;
    struct r1_kv_layer_bf16 {
        uint16_t *wq, *wk, *wv, *wo, *wgate, *wup, *wdown;
    } *wl;                       /* (n_layers) views into wmem or the model's w16 */
    uint16_t *lm_head16;         /* (V, C) view likewise */
    /* decode-only steps (every token's logits) replay a graph of their ops where the
     * backend records graphs (ops graph_*): graphs[precision][N <= logit_rows], made on
     * first use; use_graphs 0 runs every step op by op (r1_kv_cache_set_graphs) */
    void **graphs[2];
    int use_graphs;
};

/* The cache's keys and values are bf16 (kv16) when m is in precision bf16 now and the
 * backend has the bf16 cache ops, else f32; later precision changes do not change them. */
int r1_kv_cache_create(struct r1_kv_cache **out, const struct r1_model *m, int slots,
                       int max_len, int max_tokens);
void r1_kv_cache_free(struct r1_kv_cache *c);
/* Picks the precision of the weight matrices the next decodes use: R1_F32 (the model's
 * own) or R1_BF16, whose copies (q/k/v/o, gate/up/down, lm_head; embeddings, norms and
 * biases stay f32) are converted now from the model's current weights, round to nearest
 * even (a model in precision bf16 lends its own copy, made current now, r1_model_sync16:
 * no second one).  Call again after the weights or the model's precision change.  R1_EINVAL
 * for another dtype or a backend without the bf16 ops; R1_ENOMEM when the copies do not
 * fit. */
int r1_kv_cache_set_weights(struct r1_kv_cache *c, struct r1_model *m, enum r1_dtype dt);
/* on: decode-only steps replay recorded graphs (the default where the backend has the graph
 * ops; the same bits as running the ops one by one); 0: never.  R1_EINVAL for on without. */
int r1_kv_cache_set_graphs(struct r1_kv_cache *c, int on);
/* Runs N new tokens (host arrays tokens, slot, pos (N)) through the model,
 * storing their keys/values, and computes the logits of the tokens listed in
 * out_idx (n_out indices into 0..N); writes them to host logits (n_out, V) unless
 * logits is NULL (they stay on the backend for r1_kv_cache_sample, at most logit_rows
 * of them: one per slot). */
int r1_model_decode(struct r1_model *m, struct r1_kv_cache *c, int N, const int32_t *tokens,
                    const int32_t *slot, const int32_t *pos, int n_out, const int32_t *out_idx,
                    float *logits);
/* Draws the next token of the first n_out rows of logits the last decode computed on the
 * backend (its op sample; R1_EINVAL without one), among the ids 0..V-1 (V <= the model's
 * vocabulary), with the host uniforms u (n_out): host tokens and logprobs (n_out), as
 * r1_sample_token would give them (see the op). */
int r1_kv_cache_sample(struct r1_kv_cache *c, const struct r1_sampling *s, int n_out, int V,
                       const float *u, int32_t *tokens, float *logprobs);

/* Copies parameters to/from host f32 arrays in tensor order (for I/O). */
void r1_model_download_param(const struct r1_model *m, int i, float *host);
void r1_model_upload_param(struct r1_model *m, int i, const float *host);
/* Code that writes the parameter arena other than through the model's functions (a copy
 * between models, a test's direct writes, a gather of shards) calls this after: in
 * precision bf16 the bf16 copy is then remade before the next forward or generation.  The
 * model's loaders, r1_model_init_*, r1_model_copy_weights, r1_model_upload_param and
 * r1_optim_step need no call. */
void r1_model_params_changed(struct r1_model *m);
/* In precision bf16, makes the bf16 copy match the parameters (one conversion pass when
 * they changed since it was made); nothing otherwise.  The forward passes call it. */
void r1_model_sync16(struct r1_model *m);

#endif
