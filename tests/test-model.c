/* test-model.c - the decoder: finite-difference gradients of every parameter
 * tensor (LM head and score head), KV-cache parity, overfitting a fixed batch,
 * determinism, HF dir I/O (causal LM and score-head model). */
#include <math.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cmocka.h>

#include "core/backend.h"
#include "core/err.h"
#include "core/hfdir.h"
#include "core/model.h"
#include "core/optim.h"
#include "core/rng.h"

static struct r1_backend *be;

static int setup(void **state)
{
    (void)state;
    return r1_backend_create(&be, R1_BACKEND_CPU, 0);
}

static int teardown(void **state)
{
    (void)state;
    r1_backend_free(be);
    return 0;
}

/* A small config with every feature on: GQA, QKV bias, untied head. */
static struct r1_model_config micro_config(int tie, int bias)
{
    struct r1_model_config c;
    r1_model_config_preset(&c, "tiny");
    c.vocab_size = 37;
    c.hidden_size = 16;
    c.n_layers = 2;
    c.n_heads = 4;
    c.n_kv_heads = 2;
    c.head_dim = 4;
    c.ffn_size = 24;
    c.max_seq_len = 16;
    c.qkv_bias = bias;
    c.tie_embeddings = tie;
    c.eos_id = -1;
    c.pad_id = -1;
    c.arch = bias ? R1_ARCH_QWEN2 : R1_ARCH_LLAMA;
    return c;
}

/* Batch: row 0 packs two documents, row 1 ends in padding; some targets are -1. */
#define GB 2
#define GT 6
static const int32_t g_tokens[GB * GT] = {3, 17, 5, 9, 30, 2, 11, 4, 36, 8, 0, 0};
static const int32_t g_pos[GB * GT] = {0, 1, 2, 0, 1, 2, 0, 1, 2, 3, 0, 0};
static const int32_t g_seg[GB * GT] = {0, 0, 0, 1, 1, 1, 0, 0, 0, 0, -1, -1};
static const int32_t g_targets[GB * GT] = {17, 5, -1, 30, 2, 7, 4, 36, 8, 1, -1, -1};

/* L = Σ c·logp + Σ e·entropy over the batch. */
static double scalar_loss(struct r1_model *m, const struct r1_batch *b, const float *c,
                          const float *e)
{
    float logp[GB * GT], ent[GB * GT];
    assert_int_equal(r1_model_forward(m, b, logp, ent), 0);
    double L = 0;
    for (int i = 0; i < GB * GT; i++)
        L += (double)c[i] * logp[i] + (double)e[i] * ent[i];
    return L;
}

/* Larger weights than the default init: every path's gradient is visible. */
static void big_weights(struct r1_model *m)
{
    for (int k = 0; k < m->n_tensors; k++) {
        float *w = m->tensors[k].w.data;
        int64_t n = r1_tensor_numel(&m->tensors[k].w);
        for (int64_t i = 0; i < n; i++)
            w[i] = strstr(m->tensors[k].name, "norm") ? 1.0f + 0.3f * r1_rng_normal_at(9, k, i)
                                                      : 0.3f * r1_rng_normal_at(9, k, i);
    }
}

static void gradcheck(int tie, int bias, float logit_scale)
{
    struct r1_model_config cfg = micro_config(tie, bias);
    struct r1_model *m = NULL;
    assert_int_equal(r1_model_create(&m, &cfg, be), 0);
    big_weights(m);
    assert_int_equal(r1_model_reserve(m, GB, GT), 0);
    m->logit_scale = logit_scale;
    struct r1_batch b = {GB, GT, g_tokens, g_pos, g_seg, g_targets};
    float c[GB * GT], e[GB * GT];
    for (int i = 0; i < GB * GT; i++) {
        c[i] = r1_rng_normal_at(3, 1, i);
        e[i] = 0.5f * r1_rng_normal_at(3, 2, i);
    }
    float logp[GB * GT], ent[GB * GT];
    r1_model_zero_grad(m);
    assert_int_equal(r1_model_forward(m, &b, logp, ent), 0);
    assert_int_equal(r1_model_backward(m, c, e), 0);

    /* Central differences in f32 with h = 1e-2: truncation error O(h²·f''') ~1e-4 and
     * rounding ~1e-7·|L|/h ~1e-5 for |L| ~ 10; compared per tensor on a sample of
     * elements as ||fd - g|| <= 2e-2·||g|| + 1e-3 (relative bound with an absolute
     * floor for tensors whose gradient is tiny). */
    const float h = 1e-2f;
    for (int k = 0; k < m->n_tensors; k++) {
        struct r1_param *p = &m->tensors[k];
        int64_t n = r1_tensor_numel(&p->w);
        float *w = p->w.data, *g = p->g.data;
        double num = 0, den = 0;
        int samples = n < 12 ? (int)n : 12;
        for (int s = 0; s < samples; s++) {
            int64_t i = (int64_t)((uint64_t)(s * 2654435761u + k * 97) % (uint64_t)n);
            float old = w[i];
            w[i] = old + h;
            double lp = scalar_loss(m, &b, c, e);
            w[i] = old - h;
            double lm = scalar_loss(m, &b, c, e);
            w[i] = old;
            double fd = (lp - lm) / (2.0 * h);
            num += (fd - g[i]) * (fd - g[i]);
            den += (double)g[i] * g[i];
        }
        if (!(sqrt(num) <= 2e-2 * sqrt(den) + 1e-3))
            fail_msg("gradient of %s: ||fd - analytic|| = %g, ||analytic|| = %g", p->name,
                     sqrt(num), sqrt(den));
    }
    /* padding and unscored positions report zero */
    assert_true(logp[2] == 0.0f && logp[10] == 0.0f && ent[11] == 0.0f);
    r1_model_free(m);
}

static void test_gradcheck_untied_bias(void **state)
{
    (void)state;
    gradcheck(0, 1, 1.0f);
}

/* The RL losses score softmax(logits / temperature): the scale's chain rule. */
static void test_gradcheck_logit_scale(void **state)
{
    (void)state;
    gradcheck(0, 1, 1.0f / 0.7f);
}

static void test_gradcheck_tied(void **state)
{
    (void)state;
    gradcheck(1, 0, 1.0f);
}

/* Packing: the logits of a document packed after another equal its logits alone. */
static void test_packing_isolation(void **state)
{
    (void)state;
    struct r1_model_config cfg = micro_config(1, 1);
    struct r1_model *m = NULL;
    assert_int_equal(r1_model_create(&m, &cfg, be), 0);
    r1_model_init_weights(m, 11);
    assert_int_equal(r1_model_reserve(m, 1, 8), 0);
    int32_t tok[8] = {1, 2, 3, 4, 5, 6, 7, 8}, pos[8] = {0, 1, 2, 3, 0, 1, 2, 3};
    int32_t seg[8] = {0, 0, 0, 0, 1, 1, 1, 1}, tgt[8] = {2, 3, 4, 5, 6, 7, 8, 9};
    struct r1_batch packed = {1, 8, tok, pos, seg, tgt};
    float lp_packed[8], lp_alone[4];
    assert_int_equal(r1_model_forward(m, &packed, lp_packed, NULL), 0);
    int32_t seg2[4] = {0, 0, 0, 0};
    struct r1_batch alone = {1, 4, tok + 4, pos + 4, seg2, tgt + 4};
    assert_int_equal(r1_model_forward(m, &alone, lp_alone, NULL), 0);
    for (int i = 0; i < 4; i++) /* same math, same order per row: equal to rounding */
        assert_true(fabsf(lp_packed[4 + i] - lp_alone[i]) <= 1e-5f);
    r1_model_free(m);
}

/* KV-cache decode logits equal the full forward's logits at every position. */
static void test_kv_cache_parity(void **state)
{
    (void)state;
    struct r1_model_config cfg;
    r1_model_config_preset(&cfg, "tiny");
    cfg.qkv_bias = true;
    struct r1_model *m = NULL;
    assert_int_equal(r1_model_create(&m, &cfg, be), 0);
    r1_model_init_weights(m, 5);
    enum { T = 24 };
    int V = cfg.vocab_size;
    int32_t tok[T], pos[T], seg[T], tgt[T], rows[T];
    for (int t = 0; t < T; t++) {
        tok[t] = (t * 37 + 11) % V;
        pos[t] = t;
        seg[t] = 0;
        tgt[t] = -1;
        rows[t] = t;
    }
    assert_int_equal(r1_model_reserve(m, 1, T), 0);
    struct r1_batch b = {1, T, tok, pos, seg, tgt};
    float *full = malloc(sizeof(float) * T * V), *dec = malloc(sizeof(float) * T * V);
    assert_int_equal(r1_model_logits(m, &b, rows, T, full), 0);

    struct r1_kv_cache *kc = NULL;
    assert_int_equal(r1_kv_cache_create(&kc, m, 2, 32, 16), 0);
    /* prefill 10 tokens in slot 1, then decode one at a time */
    int32_t slot[16];
    for (int i = 0; i < 16; i++)
        slot[i] = 1;
    int32_t idx[10];
    for (int i = 0; i < 10; i++)
        idx[i] = i;
    assert_int_equal(r1_model_decode(m, kc, 10, tok, slot, pos, 10, idx, dec), 0);
    for (int t = 10; t < T; t++) {
        int32_t zero = 0;
        assert_int_equal(r1_model_decode(m, kc, 1, tok + t, slot, pos + t, 1, &zero,
                                         dec + (size_t)t * V), 0);
    }
    /* Tolerance: both paths compute the same sums but attention accumulates over
     * a different loop structure; f32 rounding differences stay below 1e-4 on logits
     * of magnitude ~1. */
    double maxd = 0;
    for (int i = 0; i < T * V; i++)
        maxd = fmax(maxd, fabs((double)full[i] - dec[i]));
    if (maxd > 1e-4)
        fail_msg("kv-cache logits differ from full forward by %g", maxd);
    r1_kv_cache_free(kc);
    free(full);
    free(dec);
    r1_model_free(m);
}

/* Trains the tiny model on one fixed batch: returns the final loss. */
static double overfit_in(enum r1_dtype precision, uint64_t seed, int steps,
                         float *final_weights_sum);

static double overfit(uint64_t seed, int steps, float *final_weights_sum)
{
    return overfit_in(R1_F32, seed, steps, final_weights_sum);
}

static double overfit_in(enum r1_dtype precision, uint64_t seed, int steps,
                         float *final_weights_sum)
{
    struct r1_model_config cfg;
    r1_model_config_preset(&cfg, "tiny");
    struct r1_model *m = NULL;
    struct r1_optim *o = NULL;
    struct r1_optim_config oc;
    r1_optim_config_default(&oc);
    oc.lr = 1e-2f;
    oc.weight_decay = 0.0f;
    assert_int_equal(r1_model_create(&m, &cfg, be), 0);
    r1_model_init_weights(m, seed);
    assert_int_equal(r1_model_set_precision(m, precision), 0);
    assert_int_equal(r1_optim_create(&o, m, &oc), 0);
    const char *text = "<think>2+3=5</think><answer>5</answer>";
    enum { T = 32 };
    int32_t tok[T], pos[T], seg[T], tgt[T];
    float w[T];
    for (int t = 0; t < T; t++) {
        tok[t] = (unsigned char)text[t];
        tgt[t] = (unsigned char)text[t + 1];
        pos[t] = t;
        seg[t] = 0;
        w[t] = 1.0f;
    }
    assert_int_equal(r1_model_reserve(m, 1, T), 0);
    struct r1_batch b = {1, T, tok, pos, seg, tgt};
    double loss = 0;
    for (int s = 0; s < steps; s++) {
        assert_int_equal(r1_model_ce_step(m, &b, w, T, &loss), 0);
        assert_int_equal(r1_optim_step(o), 0);
    }
    if (final_weights_sum) {
        double sum = 0;
        for (int64_t i = 0; i < (int64_t)(m->params.cap / sizeof(float)); i++)
            sum += m->param_mem[i] * (double)(i % 7 + 1);
        *final_weights_sum = (float)sum;
    }
    r1_optim_free(o);
    r1_model_free(m);
    return loss;
}

static void test_overfit(void **state)
{
    (void)state;
    /* 32 characters, 150 AdamW steps at lr 1e-2: the model memorises the batch.
     * Start is ln(264) = 5.58; threshold 0.05 nats/token means it is memorised. */
    double loss = overfit(1, 150, NULL);
    if (!(loss < 0.05))
        fail_msg("overfit loss %g not below 0.05", loss);
}

/* Precision bf16 (mixed, as autocast): logprobs, entropies and gradients within bf16
 * rounding of the f32 model's; bitwise repeatable, the same with recomputation and in a
 * frozen model; back to f32 gives f32's bits again; it trains.
 *
 * Tolerances.  Each matmul rounds two operands to bf16 (relative 2^-9 each); through 3
 * layers and the head the logprobs and entropies (|logp| ~ 4) move by 0.014 and 0.029
 * (measured; R1_TEST_VERBOSE=1 prints it), bounded at 0.1.  The whole gradient moves by
 * ~2% of its norm (bound 5%); single tensors by 1-7%, and up to 10% for k_proj.bias,
 * whose exact gradient nearly cancels (a bias shared by every key only matters through
 * RoPE), so the per-tensor bound is 25%.  A mistake in the bf16 path (a wrong operand, a
 * missing gradient term) moves these by O(1). */
static void test_bf16(void **state)
{
    (void)state;
    int verbose = getenv("R1_TEST_VERBOSE") != NULL;
    for (int tie = 0; tie <= 1; tie++) {
        struct r1_model_config cfg = micro_config(tie, !tie);
        cfg.n_layers = 3;
        struct r1_model *m = NULL, *h = NULL, *r = NULL, *f = NULL;
        assert_int_equal(r1_model_create(&m, &cfg, be), 0);
        assert_int_equal(r1_model_create(&h, &cfg, be), 0);
        assert_int_equal(r1_model_create(&r, &cfg, be), 0);
        assert_int_equal(r1_model_create_frozen(&f, &cfg, be), 0);
        big_weights(m), big_weights(h), big_weights(r), big_weights(f);
        assert_int_equal(r1_model_set_precision(h, R1_F16), R1_EINVAL);
        assert_int_equal(r1_model_set_precision(h, R1_BF16), 0);
        assert_int_equal(r1_model_set_precision(r, R1_BF16), 0);
        assert_int_equal(r1_model_set_precision(f, R1_BF16), 0);
        assert_int_equal(h->w16.cap, h->params.cap / 2);
        r1_model_set_recompute(r, true);
        assert_int_equal(r1_model_reserve(m, GB, GT), 0);
        assert_int_equal(r1_model_reserve(h, GB, GT), 0);
        assert_int_equal(r1_model_reserve(r, GB, GT), 0);
        assert_int_equal(r1_model_reserve(f, GB, GT), 0);
        struct r1_batch b = {GB, GT, g_tokens, g_pos, g_seg, g_targets};
        float lm[GB * GT], em[GB * GT], lh[GB * GT], eh[GB * GT], l2[GB * GT], e2[GB * GT];
        float c[GB * GT], e[GB * GT];
        for (int i = 0; i < GB * GT; i++) {
            c[i] = r1_rng_normal_at(3, 1, i);
            e[i] = 0.5f * r1_rng_normal_at(3, 2, i);
        }
        assert_int_equal(r1_model_forward(m, &b, lm, em), 0);
        assert_int_equal(r1_model_backward(m, c, e), 0);
        assert_int_equal(r1_model_forward(h, &b, lh, eh), 0);
        assert_int_equal(r1_model_backward(h, c, e), 0);
        double dmax = 0;
        int differ = 0;
        for (int i = 0; i < GB * GT; i++) {
            dmax = fmax(dmax, fmax(fabs((double)lh[i] - lm[i]), fabs((double)eh[i] - em[i])));
            differ += lh[i] != lm[i];
        }
        if (verbose)
            printf("bf16 tie=%d: max |logp, entropy difference| %.3g\n", tie, dmax);
        assert_true(differ > 0); /* the bf16 path ran */
        assert_true(dmax <= 0.1);
        double all_num = 0, all_den = 0;
        for (int k = 0; k < m->n_tensors; k++) {
            const float *g32 = m->tensors[k].g.data, *g16 = h->tensors[k].g.data;
            int64_t n = r1_tensor_numel(&m->tensors[k].g);
            double num = 0, den = 0;
            for (int64_t i = 0; i < n; i++) {
                num += ((double)g16[i] - g32[i]) * ((double)g16[i] - g32[i]);
                den += (double)g32[i] * g32[i];
            }
            all_num += num, all_den += den;
            if (verbose)
                printf("  %-44s relative gradient difference %.3g\n", m->tensors[k].name,
                       sqrt(num / den));
            if (!(den > 0 && sqrt(num) <= 0.25 * sqrt(den)))
                fail_msg("bf16 gradient of %s: ||g16 - g32|| = %g, ||g32|| = %g",
                         m->tensors[k].name, sqrt(num), sqrt(den));
        }
        if (verbose)
            printf("  all tensors: relative gradient difference %.3g\n", sqrt(all_num / all_den));
        assert_true(sqrt(all_num) <= 0.05 * sqrt(all_den));
        /* recomputed, frozen, repeated: the same bits */
        assert_int_equal(r1_model_forward(r, &b, l2, e2), 0);
        assert_memory_equal(l2, lh, sizeof(lh));
        assert_memory_equal(e2, eh, sizeof(eh));
        assert_int_equal(r1_model_backward(r, c, e), 0);
        assert_memory_equal(r->grad_mem, h->grad_mem, h->grads.cap);
        assert_int_equal(r1_model_forward(f, &b, l2, e2), 0);
        assert_memory_equal(l2, lh, sizeof(lh));
        assert_memory_equal(e2, eh, sizeof(eh));
        assert_int_equal(r1_model_forward(h, &b, l2, e2), 0);
        assert_memory_equal(l2, lh, sizeof(lh));
        /* the copy follows the weights: a changed weight (a direct write, told with
         * r1_model_params_changed) changes the bf16 forward, and back */
        float *w0 = h->layers[0].wq, old = w0[0];
        w0[0] = old + 0.5f;
        r1_model_params_changed(h);
        assert_int_equal(r1_model_forward(h, &b, l2, e2), 0);
        assert_true(memcmp(l2, lh, sizeof(lh)) != 0);
        w0[0] = old;
        r1_model_params_changed(h);
        assert_int_equal(r1_model_forward(h, &b, l2, e2), 0);
        assert_memory_equal(l2, lh, sizeof(lh));
        /* back to f32: f32's bits */
        assert_int_equal(r1_model_set_precision(h, R1_F32), 0);
        assert_int_equal(h->w16.cap, 0);
        assert_int_equal(r1_model_reserve(h, GB, GT), 0);
        assert_int_equal(r1_model_forward(h, &b, l2, e2), 0);
        assert_memory_equal(l2, lm, sizeof(lm));
        r1_model_free(m), r1_model_free(h), r1_model_free(r), r1_model_free(f);
    }
    /* it trains: the tiny model memorises a batch in bf16 as in f32 (test_overfit) */
    double loss = overfit_in(R1_BF16, 1, 150, NULL);
    if (verbose)
        printf("bf16 overfit loss %.4g\n", loss);
    if (!(loss < 0.05))
        fail_msg("bf16 overfit loss %g not below 0.05", loss);
}

/* An untied micro model with big weights, reserved for B×T: the refusal cases below. */
static struct r1_model *big_micro(int B, int T)
{
    struct r1_model_config cfg = micro_config(0, 1);
    struct r1_model *m = NULL;
    assert_int_equal(r1_model_create(&m, &cfg, be), 0);
    big_weights(m);
    assert_int_equal(r1_model_reserve(m, B, T), 0);
    return m;
}

/* Two equal models for a fused step against forward-then-backward: tied or untied, f32 or
 * bf16, and with `other` recomputation and a logit scale; zero gradients. */
static void fused_pair(struct r1_model *m[2], int tie, int bf16, int other, int B, int T)
{
    struct r1_model_config cfg = micro_config(tie, !tie);
    for (int k = 0; k < 2; k++) {
        m[k] = NULL;
        assert_int_equal(r1_model_create(&m[k], &cfg, be), 0);
        big_weights(m[k]);
        assert_int_equal(r1_model_set_precision(m[k], bf16 ? R1_BF16 : R1_F32), 0);
        r1_model_set_recompute(m[k], other);
        m[k]->logit_scale = other ? 1.0f / 0.7f : 1.0f;
        assert_int_equal(r1_model_reserve(m[k], B, T), 0);
        r1_model_zero_grad(m[k]);
    }
}

/* r1_model_ce_step runs the head's forward and backward per chunk of logits at once (its
 * dL/dlogp is known before the forward): the loss and every gradient bit for bit those of
 * r1_model_forward then r1_model_backward with dlogp = -w/denom, over more scored rows than
 * one chunk (rows skipped, weights varied), f32 and bf16, tied and untied, a logit scale,
 * with recomputation; and a non-finite loss is refused. */
static void test_ce_step_fused(void **state)
{
    (void)state;
    enum { B = 20, T = 16, N = B * T };
    static int32_t tok[N], pos[N], seg[N], tgt[N];
    static float w[N], logp[N], dlogp[N];
    for (int i = 0; i < N; i++) {
        tok[i] = (int32_t)(r1_rng_normal_at(11, 1, i) * 1000.0f + 1e6f) % 37;
        tgt[i] = i % 7 == 3 ? -1 : (int32_t)(r1_rng_normal_at(11, 2, i) * 1000.0f + 1e6f) % 37;
        pos[i] = i % T;
        seg[i] = 0;
        w[i] = 0.5f + (float)(i % 5) * 0.25f;
    }
    struct r1_batch b = {B, T, tok, pos, seg, tgt};
    for (int v = 0; v < 8; v++) {
        int tie = v & 1, bf16 = v >> 1 & 1, other = v >> 2 & 1;
        struct r1_model *m[2];
        fused_pair(m, tie, bf16, other, B, T);
        const double denom = 123.0;
        double fused = 0, sum = 0;
        assert_int_equal(r1_model_ce_step(m[0], &b, w, denom, &fused), 0);
        assert_int_equal(r1_model_forward(m[1], &b, logp, NULL), 0);
        for (int i = 0; i < N; i++) {
            float wi = tgt[i] >= 0 ? w[i] : 0.0f;
            sum -= (double)wi * logp[i];
            dlogp[i] = (float)(-(double)wi / denom);
        }
        assert_int_equal(r1_model_backward(m[1], dlogp, NULL), 0);
        if (fused != sum / denom)
            fail_msg("variant %d: fused loss %.17g, forward-then-backward %.17g", v, fused,
                     sum / denom);
        assert_memory_equal(m[0]->grad_mem, m[1]->grad_mem, m[0]->grads.cap);
        assert_int_equal(r1_model_backward(m[0], dlogp, NULL), R1_ESTATE); /* nothing kept */
        r1_model_free(m[0]), r1_model_free(m[1]);
    }
    /* a NaN weight: refused, as the loss it makes */
    struct r1_model *m = big_micro(B, T);
    double loss;
    w[5] = NAN;
    assert_int_equal(r1_model_ce_step(m, &b, w, 10.0, &loss), R1_ENUMERIC);
    w[5] = 1.0f;
    assert_int_equal(r1_model_ce_step(m, &b, w, 0.0, &loss), R1_EINVAL);
    r1_model_free(m);
}

/* r1_model_pg_step makes the policy-gradient loss of each chunk of log-probs as the head
 * does and runs the head's backward at once: its sums and every gradient bit for bit those
 * of r1_model_forward, the CPU's pg_loss over the scored positions, r1_model_backward, over
 * more scored rows than one chunk, with and without old and reference log-probs and an
 * entropy bonus, f32 and bf16, tied and untied, a logit scale, with recomputation; weights
 * of unscored positions are not read; a non-finite loss is refused. */
static void test_pg_step_fused(void **state)
{
    (void)state;
    enum { B = 20, T = 16, N = B * T };
    static int32_t tok[N], pos[N], seg[N], tgt[N];
    static float w[N], wref[N], adv[N], old[N], ref[N], logp[N], ent[N], dlogp[N], dent[N];
    for (int i = 0; i < N; i++) {
        tok[i] = (int32_t)(r1_rng_normal_at(12, 1, i) * 1000.0f + 1e6f) % 37;
        tgt[i] = i % 7 == 3 ? -1 : (int32_t)(r1_rng_normal_at(12, 2, i) * 1000.0f + 1e6f) % 37;
        pos[i] = i % T;
        seg[i] = 0;
        w[i] = i % 11 == 4 ? 0.0f : 0.01f + (float)(i % 5) * 0.005f;
        wref[i] = tgt[i] >= 0 ? w[i] : 0.0f;
        adv[i] = r1_rng_normal_at(12, 3, i);
    }
    struct r1_batch b = {B, T, tok, pos, seg, tgt};
    for (int v = 0; v < 32; v++) {
        int tie = v & 1, bf16 = v >> 1 & 1, other = v >> 2 & 1, use_old = v >> 3 & 1;
        int use_ref = v >> 4 & 1;
        struct r1_pg_cfg pc = {0.2f, 0.28f, use_ref ? 0.05f : 0.0f, (v % 3) ? 0.01f : 0.0f};
        struct r1_model *m[2];
        fused_pair(m, tie, bf16, other, B, T);
        /* old and reference log-probs near the policy's: ratios clipped on both sides */
        assert_int_equal(r1_model_forward(m[1], &b, logp, ent), 0);
        for (int i = 0; i < N; i++) {
            old[i] = logp[i] + 0.5f * r1_rng_normal_at(12, 4, i);
            ref[i] = logp[i] + 0.3f * r1_rng_normal_at(12, 5, i);
        }
        struct r1_pg_tokens t = {use_old ? old : NULL, use_ref ? ref : NULL, adv, w};
        struct r1_pg_stats fused = {1.5, 7, 0.25, 3, 1, 2}, want = fused;
        assert_int_equal(r1_model_pg_step(m[0], &b, &pc, &t, &fused), 0);
        assert_int_equal(r1_model_forward(m[1], &b, logp, ent), 0);
        be->ops->pg_loss(be->ctx, dlogp, dent, &want, logp, use_old ? old : NULL,
                         use_ref ? ref : NULL, ent, adv, wref, &pc, N);
        assert_int_equal(r1_model_backward(m[1], dlogp, pc.entropy_coef != 0 ? dent : NULL), 0);
        if (memcmp(&fused, &want, sizeof(want)))
            fail_msg("variant %d: fused sums (loss %.17g, tokens %g, kl %.17g, clipped %g %g) "
                     "!= forward-then-backward (%.17g, %g, %.17g, %g %g)", v, fused.loss,
                     fused.n_tokens, fused.kl, fused.clip_low, fused.clip_high, want.loss,
                     want.n_tokens, want.kl, want.clip_low, want.clip_high);
        if (use_old) /* both sides clipped somewhere */
            assert_true(want.clip_low > 1 && want.clip_high > 2);
        else /* ρ = 1: nothing clipped, nothing added to the starting sums */
            assert_true(want.clip_low == 1 && want.clip_high == 2);
        assert_memory_equal(m[0]->grad_mem, m[1]->grad_mem, m[0]->grads.cap);
        assert_int_equal(r1_model_backward(m[0], dlogp, NULL), R1_ESTATE); /* nothing kept */
        r1_model_free(m[0]), r1_model_free(m[1]);
    }
    /* a NaN advantage: refused, as the loss it makes; a frozen model: no backward */
    struct r1_model_config cfg = micro_config(0, 1);
    struct r1_model *m = big_micro(B, T);
    struct r1_pg_cfg pc = {0.2f, 0.2f, 0.0f, 0.0f};
    struct r1_pg_tokens t = {NULL, NULL, adv, w};
    struct r1_pg_stats st = {0};
    adv[5] = NAN;
    assert_int_equal(r1_model_pg_step(m, &b, &pc, &t, &st), R1_ENUMERIC);
    adv[5] = 1.0f;
    r1_model_free(m);
    assert_int_equal(r1_model_create_frozen(&m, &cfg, be), 0);
    assert_int_equal(r1_model_reserve(m, B, T), 0);
    st = (struct r1_pg_stats){0};
    assert_int_equal(r1_model_pg_step(m, &b, &pc, &t, &st), R1_ESTATE);
    r1_model_free(m);
}

/* r1_model_reserve and r1_kv_cache_create reserve the backend's scratch for their largest
 * calls: training steps (f32 and bf16) and decode steps then allocate none. */
static size_t scratch_held(void)
{
    const struct r1_op_sizes none = {0};
    size_t held = 0;
    assert_int_equal(be->ops->reserve(be->ctx, &none, &held), 0);
    return held;
}

static void test_scratch_reserved(void **state)
{
    (void)state;
    struct r1_backend *own;
    assert_int_equal(r1_backend_create(&own, R1_BACKEND_CPU, 2), 0); /* fresh scratch */
    struct r1_backend *saved = be;
    be = own;
    struct r1_model_config cfg = micro_config(0, 1);
    for (int bf16 = 0; bf16 <= 1; bf16++) {
        struct r1_model *m = NULL;
        assert_int_equal(r1_model_create(&m, &cfg, be), 0);
        assert_int_equal(r1_model_init_weights(m, 3), 0);
        assert_int_equal(r1_model_set_precision(m, bf16 ? R1_BF16 : R1_F32), 0);
        assert_int_equal(r1_model_reserve(m, GB, GT), 0);
        size_t held = scratch_held();
        assert_true(held > 0);
        struct r1_batch b = {GB, GT, g_tokens, g_pos, g_seg, g_targets};
        float lp[GB * GT], dl[GB * GT];
        assert_int_equal(r1_model_forward(m, &b, lp, NULL), 0);
        for (int i = 0; i < GB * GT; i++)
            dl[i] = 0.1f;
        assert_int_equal(r1_model_backward(m, dl, NULL), 0);
        assert_int_equal(scratch_held(), held);
        struct r1_kv_cache *kc = NULL;
        assert_int_equal(r1_kv_cache_create(&kc, m, 2, 16, 8), 0);
        held = scratch_held();
        assert_int_equal(r1_kv_cache_set_weights(kc, m, bf16 ? R1_BF16 : R1_F32), 0);
        int32_t slot[8] = {0, 0, 0, 0, 0, 0, 0, 0}, pos[8] = {0, 1, 2, 3, 4, 5, 6, 7}, idx = 7;
        float logits[37];
        assert_int_equal(r1_model_decode(m, kc, 8, g_tokens, slot, pos, 1, &idx, logits), 0);
        assert_int_equal(scratch_held(), held);
        r1_kv_cache_free(kc);
        r1_model_free(m);
    }
    be = saved;
    r1_backend_free(own);
}

/* A frozen model (forward only, layers sharing buffers) gives bitwise the logprobs and
 * entropies of a trainable one with the same weights, on a fraction of the memory, and
 * refuses backward and an optimizer. */
static void test_frozen(void **state)
{
    (void)state;
    struct r1_model_config cfg = micro_config(0, 1);
    cfg.n_layers = 5; /* layers 2.. reuse buffers */
    struct r1_model *m = NULL, *f = NULL;
    assert_int_equal(r1_model_create(&m, &cfg, be), 0);
    assert_int_equal(r1_model_create_frozen(&f, &cfg, be), 0);
    assert_int_equal(r1_model_init_weights(m, 5), 0);
    assert_int_equal(r1_model_init_weights(f, 5), 0);
    assert_int_equal(r1_model_reserve(m, GB, GT), 0);
    assert_int_equal(r1_model_reserve(f, GB, GT), 0);
    assert_int_equal(f->grads.cap, 0);
    assert_null(f->grad_mem);
    assert_true(f->acts.cap < m->acts.cap / 2);
    m->logit_scale = f->logit_scale = 1.25f;
    struct r1_batch b = {GB, GT, g_tokens, g_pos, g_seg, g_targets};
    float lm[GB * GT], em[GB * GT], lf[GB * GT], ef[GB * GT];
    for (int rep = 0; rep < 2; rep++) { /* the second pass runs over the first's buffers */
        assert_int_equal(r1_model_forward(m, &b, lm, em), 0);
        assert_int_equal(r1_model_forward(f, &b, lf, ef), 0);
        assert_memory_equal(lm, lf, sizeof(lm));
        assert_memory_equal(em, ef, sizeof(em));
    }
    float c[GB * GT] = {0};
    assert_int_equal(r1_model_backward(f, c, NULL), R1_ESTATE);
    assert_non_null(strstr(r1_err_last(), "frozen"));
    r1_model_zero_grad(f); /* no gradients: nothing to do, no crash */
    struct r1_optim_config oc = {0};
    r1_optim_config_default(&oc);
    struct r1_optim *o = NULL;
    assert_int_equal(r1_optim_create(&o, f, &oc), R1_ESTATE);
    assert_null(o);
    r1_model_free(m);
    r1_model_free(f);
}

/* Recomputation: the same logprobs, entropies and gradients bit for bit (LM head with an
 * entropy term, and the score head), with less activation memory. */
static void test_recompute(void **state)
{
    (void)state;
    for (int score = 0; score <= 1; score++) {
        struct r1_model_config cfg = micro_config(0, 1);
        cfg.n_layers = 4;
        cfg.num_labels = score;
        struct r1_model *m = NULL, *r = NULL;
        assert_int_equal(r1_model_create(&m, &cfg, be), 0);
        assert_int_equal(r1_model_create(&r, &cfg, be), 0);
        assert_int_equal(r1_model_init_weights(m, 7), 0);
        assert_int_equal(r1_model_init_weights(r, 7), 0);
        assert_int_equal(r1_model_reserve(r, GB, GT), 0);
        size_t full = r->acts.cap;
        r1_model_set_recompute(r, true); /* drops the reserved activations */
        assert_null(r->a);
        assert_int_equal(r1_model_reserve(m, GB, GT), 0);
        assert_int_equal(r1_model_reserve(r, GB, GT), 0);
        assert_true(r->acts.cap < full * 3 / 5);
        struct r1_batch b = {GB, GT, g_tokens, g_pos, g_seg, score ? NULL : g_targets};
        for (int rep = 0; rep < 2; rep++) { /* gradients accumulate over the two */
            if (score) {
                const int32_t last[GB] = {5, 3};
                const float c[GB] = {0.7f, -1.3f};
                float sm[GB], sr[GB];
                assert_int_equal(r1_model_score_forward(m, &b, last, sm), 0);
                assert_int_equal(r1_model_score_forward(r, &b, last, sr), 0);
                assert_memory_equal(sm, sr, sizeof(sm));
                assert_int_equal(r1_model_score_backward(m, c), 0);
                assert_int_equal(r1_model_score_backward(r, c), 0);
            } else {
                float lm[GB * GT], em[GB * GT], lr[GB * GT], er[GB * GT];
                float dl[GB * GT], de[GB * GT];
                assert_int_equal(r1_model_forward(m, &b, lm, em), 0);
                assert_int_equal(r1_model_forward(r, &b, lr, er), 0);
                assert_memory_equal(lm, lr, sizeof(lm));
                assert_memory_equal(em, er, sizeof(em));
                for (int i = 0; i < GB * GT; i++) {
                    dl[i] = 0.1f * (float)(i % 7) - 0.3f;
                    de[i] = 0.05f * (float)(i % 3);
                }
                assert_int_equal(r1_model_backward(m, dl, de), 0);
                assert_int_equal(r1_model_backward(r, dl, de), 0);
            }
        }
        assert_int_equal(m->grads.cap, r->grads.cap);
        assert_memory_equal(m->grad_mem, r->grad_mem, m->grads.cap);
        float sum = 0; /* the gradients are not trivially zero */
        for (size_t i = 0; i < m->grads.cap / sizeof(float); i++)
            sum += fabsf(m->grad_mem[i]);
        assert_true(sum > 0);
        r1_model_free(m);
        r1_model_free(r);
    }
}

/* r1_model_set_grad_hook: the announced ranges shrink to 0, one per layer plus the head and
 * the embedding, and no float changes after its range was announced (the sums of
 * core/dist.c read them while the backward goes on). */
struct hook_log {
    struct r1_model *m;
    float *snap;
    int64_t prev;
    int calls;
};

static void hook_snap(void *arg, int64_t lo)
{
    struct hook_log *h = arg;
    assert_true(lo >= 0 && lo < h->prev);
    memcpy(h->snap + lo, h->m->grad_mem + lo, (size_t)(h->prev - lo) * sizeof(float));
    h->prev = lo;
    h->calls++;
}

static void test_grad_hook(void **state)
{
    (void)state;
    for (int v = 0; v < 4; v++) { /* untied + bias, tied, score head, recompute */
        struct r1_model_config cfg = micro_config(v == 1, v == 0);
        cfg.n_layers = 3;
        cfg.num_labels = v == 2;
        struct r1_model *m = NULL;
        assert_int_equal(r1_model_create(&m, &cfg, be), 0);
        assert_int_equal(r1_model_init_weights(m, 11), 0);
        r1_model_set_recompute(m, v == 3);
        assert_int_equal(r1_model_reserve(m, GB, GT), 0);
        int64_t n = (int64_t)(m->grads.cap / sizeof(float));
        struct hook_log h = {m, calloc((size_t)n, sizeof(float)), n, 0};
        assert_non_null(h.snap);
        struct r1_batch b = {GB, GT, g_tokens, g_pos, g_seg, v == 2 ? NULL : g_targets};
        for (int rep = 0; rep < 2; rep++) { /* the hook on the second (accumulating) one */
            if (rep == 1)
                r1_model_set_grad_hook(m, hook_snap, &h);
            if (v == 2) {
                const int32_t last[GB] = {5, 3};
                const float c[GB] = {0.7f, -1.3f};
                float sc[GB];
                assert_int_equal(r1_model_score_forward(m, &b, last, sc), 0);
                assert_int_equal(r1_model_score_backward(m, c), 0);
            } else {
                float lp[GB * GT], dl[GB * GT];
                assert_int_equal(r1_model_forward(m, &b, lp, NULL), 0);
                for (int i = 0; i < GB * GT; i++)
                    dl[i] = 0.1f * (float)(i % 5) - 0.2f + 0.01f * (float)rep;
                assert_int_equal(r1_model_backward(m, dl, NULL), 0);
            }
        }
        r1_model_set_grad_hook(m, NULL, NULL);
        assert_int_equal(h.calls, cfg.n_layers + 2);
        assert_int_equal(h.prev, 0);
        assert_memory_equal(h.snap, m->grad_mem, (size_t)n * sizeof(float));
        free(h.snap);
        r1_model_free(m);
    }
}

static void test_determinism(void **state)
{
    (void)state;
    float a = 0, b = 0;
    double la = overfit(3, 10, &a), lb = overfit(3, 10, &b);
    assert_memory_equal(&la, &lb, sizeof(la));
    assert_memory_equal(&a, &b, sizeof(a));
}

static void test_hfdir_roundtrip(void **state)
{
    (void)state;
    char dir[] = "/tmp/r1-test-model-XXXXXX";
    assert_non_null(mkdtemp(dir));
    char sub[600];
    snprintf(sub, sizeof(sub), "%s/m", dir);
    struct r1_model_config cfg = micro_config(0, 1);
    struct r1_model *m = NULL, *m2 = NULL;
    assert_int_equal(r1_model_create(&m, &cfg, be), 0);
    r1_model_init_weights(m, 2);
    assert_int_equal(r1_hfdir_save(m, sub, R1_F32), 0);
    assert_int_equal(r1_hfdir_load(&m2, be, sub), 0);
    assert_int_equal(m2->n_params, m->n_params);
    assert_int_equal(m2->cfg.qkv_bias, 1);
    assert_int_equal(m2->cfg.tie_embeddings, 0);
    assert_memory_equal(m->param_mem, m2->param_mem, m->params.cap);
    r1_model_free(m2);
    /* bf16 on disk: every weight equals its bf16 rounding */
    assert_int_equal(r1_hfdir_save(m, sub, R1_BF16), 0);
    assert_int_equal(r1_hfdir_load(&m2, be, sub), 0);
    for (int64_t i = 0; i < m->n_params; i += 97) {
        float x = m->param_mem[i];
        assert_true(m2->param_mem[i] == r1_bf16_to_f32(r1_f32_to_bf16(x)));
    }
    r1_model_free(m2);
    /* a config.json with a bad value names the file and the key */
    char cj[700];
    snprintf(cj, sizeof(cj), "%s/config.json", sub);
    FILE *f = fopen(cj, "w");
    fputs("{\"model_type\": \"llama\", \"vocab_size\": \"many\"}", f);
    fclose(f);
    assert_int_equal(r1_hfdir_load(&m2, be, sub), R1_EFORMAT);
    assert_non_null(strstr(r1_err_last(), "config.json"));
    assert_non_null(strstr(r1_err_last(), "vocab_size"));
    r1_model_free(m);
    char cmd[700];
    snprintf(cmd, sizeof(cmd), "rm -rf %s", dir);
    assert_int_equal(system(cmd), 0);
}

static void test_config_check(void **state)
{
    (void)state;
    struct r1_model_config c = micro_config(1, 0);
    c.n_kv_heads = 3;
    assert_int_equal(r1_model_config_check(&c), R1_EINVAL);
    assert_non_null(strstr(r1_err_last(), "n_kv_heads"));
    struct r1_model_config p;
    assert_int_equal(r1_model_config_preset(&p, "smollm2-135m"), 0);
    /* SmolLM2-135M has 134,515,008 parameters (tied embeddings) */
    assert_int_equal(r1_model_config_n_params(&p), 134515008);
    assert_int_equal(r1_model_config_preset(&p, "nope"), R1_EINVAL);
}

/* Score head: L = Σ_b c_b · score_b with scores at last[b]; central differences of a few
 * parameters (score.weight, the embedding, attention and MLP weights, the final norm)
 * against r1_model_score_backward.  Row 0 packs two documents and is scored in the
 * second; row 1 ends in padding and is scored before it. */
static double score_loss(struct r1_model *m, const struct r1_batch *b, const int32_t *last,
                         const float *c)
{
    float sc[GB];
    assert_int_equal(r1_model_score_forward(m, b, last, sc), 0);
    double L = 0;
    for (int r = 0; r < GB; r++)
        L += (double)c[r] * sc[r];
    return L;
}

static void test_gradcheck_score(void **state)
{
    (void)state;
    struct r1_model_config cfg = micro_config(0, 1);
    cfg.num_labels = 1;
    struct r1_model *m = NULL;
    assert_int_equal(r1_model_create(&m, &cfg, be), 0);
    assert_true(r1_model_has_score_head(m));
    assert_null(r1_model_find(m, "lm_head.weight")); /* no LM head in a score model */
    const struct r1_param *sp = r1_model_find(m, "score.weight");
    assert_non_null(sp);
    assert_int_equal(sp->w.shape[0], 1);
    assert_int_equal(sp->w.shape[1], cfg.hidden_size);
    assert_true(sp->decay);
    assert_int_equal(m->n_params, r1_model_config_n_params(&cfg));
    for (int k = 0; k < m->n_tensors; k++) {
        float *w = m->tensors[k].w.data;
        int64_t n = r1_tensor_numel(&m->tensors[k].w);
        for (int64_t i = 0; i < n; i++)
            w[i] = strstr(m->tensors[k].name, "norm") ? 1.0f + 0.3f * r1_rng_normal_at(9, k, i)
                                                      : 0.3f * r1_rng_normal_at(9, k, i);
    }
    assert_int_equal(r1_model_reserve(m, GB, GT), 0);
    struct r1_batch b = {GB, GT, g_tokens, g_pos, g_seg, NULL};
    const int32_t last[GB] = {5, 3};
    const float c[GB] = {0.7f, -1.3f};
    r1_model_zero_grad(m);
    float sc[GB];
    assert_int_equal(r1_model_score_forward(m, &b, last, sc), 0);
    assert_int_equal(r1_model_backward(m, c, NULL), R1_ESTATE); /* wrong head */
    assert_int_equal(r1_model_score_forward(m, &b, last, sc), 0);
    assert_int_equal(r1_model_score_backward(m, c), 0);

    /* Tolerance as in gradcheck(): central differences in f32 with h = 1e-2 (truncation
     * O(h²) ~1e-4, rounding ~1e-7·|L|/h ~1e-5 for |L| ~ 10), per tensor over up to 12
     * elements: ||fd - g|| <= 2e-2·||g|| + 1e-3. */
    const char *names[] = {"score.weight", "model.embed_tokens.weight", "model.norm.weight",
                           "model.layers.0.self_attn.q_proj.weight",
                           "model.layers.0.self_attn.v_proj.bias",
                           "model.layers.1.mlp.down_proj.weight"};
    const float h = 1e-2f;
    for (size_t t = 0; t < sizeof(names) / sizeof(names[0]); t++) {
        const struct r1_param *p = r1_model_find(m, names[t]);
        assert_non_null(p);
        int64_t n = r1_tensor_numel(&p->w);
        float *w = p->w.data, *g = p->g.data;
        double num = 0, den = 0;
        int samples = n < 12 ? (int)n : 12;
        for (int s = 0; s < samples; s++) {
            int64_t i = (int64_t)((uint64_t)(s * 2654435761u + t * 97) % (uint64_t)n);
            float old = w[i];
            w[i] = old + h;
            double lp = score_loss(m, &b, last, c);
            w[i] = old - h;
            double lm = score_loss(m, &b, last, c);
            w[i] = old;
            double fd = (lp - lm) / (2.0 * h);
            num += (fd - g[i]) * (fd - g[i]);
            den += (double)g[i] * g[i];
        }
        if (!(den > 0 && sqrt(num) <= 2e-2 * sqrt(den) + 1e-3))
            fail_msg("score gradient of %s: ||fd - analytic|| = %g, ||analytic|| = %g", p->name,
                     sqrt(num), sqrt(den));
    }
    /* a score past the row and a score call on a causal LM are refused */
    const int32_t bad[GB] = {5, GT};
    assert_int_equal(r1_model_score_forward(m, &b, bad, sc), R1_EINVAL);
    r1_model_free(m);
    struct r1_model_config lc = micro_config(0, 1);
    assert_int_equal(r1_model_create(&m, &lc, be), 0);
    assert_false(r1_model_has_score_head(m));
    assert_int_equal(r1_model_reserve(m, GB, GT), 0);
    assert_int_equal(r1_model_score_forward(m, &b, last, sc), R1_EINVAL);
    r1_model_free(m);
}

/* A score model saves as LlamaForSequenceClassification (num_labels 1, pad_token_id) and
 * loads back with the same tensors and scores; a causal LM's weights copy into it. */
static void test_hfdir_score_roundtrip(void **state)
{
    (void)state;
    char dir[] = "/tmp/r1-test-score-XXXXXX";
    assert_non_null(mkdtemp(dir));
    struct r1_model_config cfg;
    r1_model_config_preset(&cfg, "tiny");
    struct r1_model *lm = NULL, *m = NULL, *m2 = NULL;
    assert_int_equal(r1_model_create(&lm, &cfg, be), 0);
    r1_model_init_weights(lm, 4);
    cfg.num_labels = 1;
    assert_int_equal(r1_model_create(&m, &cfg, be), 0);
    int copied = 0;
    assert_int_equal(r1_model_copy_weights(m, lm, &copied), 0);
    assert_int_equal(copied, lm->n_tensors); /* tied: every LM tensor exists in the RM */
    assert_int_equal(r1_model_init_score(m, 8), 0);
    assert_int_equal(r1_model_init_score(lm, 8), R1_EINVAL);
    assert_int_equal(r1_hfdir_save(m, dir, R1_F32), 0);
    char path[700], *text = NULL;
    snprintf(path, sizeof(path), "%s/config.json", dir);
    FILE *f = fopen(path, "r");
    assert_non_null(f);
    text = calloc(1, 8192);
    assert_true(fread(text, 1, 8191, f) > 0);
    fclose(f);
    assert_non_null(strstr(text, "\"LlamaForSequenceClassification\""));
    assert_non_null(strstr(text, "\"num_labels\": 1"));
    assert_non_null(strstr(text, "\"pad_token_id\": 263"));
    free(text);
    assert_int_equal(r1_hfdir_load(&m2, be, dir), 0);
    assert_true(r1_model_has_score_head(m2));
    assert_int_equal(m2->cfg.pad_id, 263);
    assert_int_equal(m2->n_tensors, m->n_tensors);
    assert_memory_equal(m->param_mem, m2->param_mem, m->params.cap);
    enum { T = 5 };
    int32_t tok[2 * T] = {72, 105, 33, 256, 0, 50, 43, 51, 61, 256};
    int32_t pos[2 * T] = {0, 1, 2, 3, 0, 0, 1, 2, 3, 4}, seg[2 * T] = {0, 0, 0, 0, -1, 0, 0, 0, 0, 0};
    int32_t last[2] = {3, 4};
    struct r1_batch b = {2, T, tok, pos, seg, NULL};
    float s1[2], s2[2];
    assert_int_equal(r1_model_reserve(m, 2, T), 0);
    assert_int_equal(r1_model_reserve(m2, 2, T), 0);
    assert_int_equal(r1_model_score_forward(m, &b, last, s1), 0);
    assert_int_equal(r1_model_score_forward(m2, &b, last, s2), 0);
    assert_memory_equal(s1, s2, sizeof(s1));
    assert_true(isfinite(s1[0]) && s1[0] != s1[1]);
    r1_model_free(m2);
    /* num_labels 2 is refused with a message naming the file */
    f = fopen(path, "r");
    char buf[8192] = {0};
    assert_true(fread(buf, 1, sizeof(buf) - 1, f) > 0);
    fclose(f);
    char *nl = strstr(buf, "\"num_labels\": 1");
    nl[14] = '2';
    f = fopen(path, "w");
    fputs(buf, f);
    fclose(f);
    assert_int_equal(r1_hfdir_load(&m2, be, dir), R1_EFORMAT);
    assert_non_null(strstr(r1_err_last(), "num_labels 2"));
    /* the causal LM still saves and loads as one */
    assert_int_equal(r1_hfdir_save(lm, dir, R1_F32), 0);
    assert_int_equal(r1_hfdir_load(&m2, be, dir), 0);
    assert_false(r1_model_has_score_head(m2));
    r1_model_free(m2);
    r1_model_free(m);
    r1_model_free(lm);
    char cmd[700];
    snprintf(cmd, sizeof(cmd), "rm -rf %s", dir);
    assert_int_equal(system(cmd), 0);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_gradcheck_untied_bias),
        cmocka_unit_test(test_gradcheck_tied),
        cmocka_unit_test(test_gradcheck_logit_scale),
        cmocka_unit_test(test_packing_isolation),
        cmocka_unit_test(test_kv_cache_parity),
        cmocka_unit_test(test_overfit),
        cmocka_unit_test(test_determinism),
        cmocka_unit_test(test_frozen),
        cmocka_unit_test(test_recompute),
        cmocka_unit_test(test_bf16),
        cmocka_unit_test(test_ce_step_fused),
        cmocka_unit_test(test_pg_step_fused),
        cmocka_unit_test(test_scratch_reserved),
        cmocka_unit_test(test_grad_hook),
        cmocka_unit_test(test_hfdir_roundtrip),
        cmocka_unit_test(test_config_check),
        cmocka_unit_test(test_gradcheck_score),
        cmocka_unit_test(test_hfdir_score_roundtrip),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
