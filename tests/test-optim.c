/* test-optim.c - AdamW, clipping, schedules, accumulation and exact save/resume. */
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

static void test_schedules(void **state)
{
    (void)state;
    struct r1_optim_config c;
    r1_optim_config_default(&c);
    c.lr = 1.0f;
    c.min_lr = 0.1f;
    c.warmup_steps = 4;
    c.total_steps = 14;
    /* warm-up: lr·(step+1)/warmup */
    assert_float_equal(r1_optim_lr(&c, 0), 0.25, 1e-7);
    assert_float_equal(r1_optim_lr(&c, 3), 1.0, 1e-7);
    c.schedule = R1_LR_CONSTANT;
    assert_float_equal(r1_optim_lr(&c, 100), 1.0, 1e-7);
    c.schedule = R1_LR_COSINE; /* halfway through the decay: min + (lr-min)/2 = 0.55 */
    assert_float_equal(r1_optim_lr(&c, 9), 0.55, 1e-6);
    assert_float_equal(r1_optim_lr(&c, 14), 0.1, 1e-6);
    assert_float_equal(r1_optim_lr(&c, 50), 0.1, 1e-6);
    c.schedule = R1_LR_LINEAR; /* 3/10 of the way: 1 - 0.9·0.3 = 0.73 */
    assert_float_equal(r1_optim_lr(&c, 7), 0.73, 1e-6);
    enum r1_lr_schedule s;
    assert_int_equal(r1_lr_schedule_parse(&s, "cosine"), 0);
    assert_int_equal(s, R1_LR_COSINE);
    assert_int_equal(r1_lr_schedule_parse(&s, "cosin"), R1_EINVAL);
    c.total_steps = 2;
    assert_int_equal(r1_optim_config_check(&c), R1_EINVAL);
}

struct rig {
    struct r1_model *m;
    struct r1_optim *o;
};

static struct rig make_rig(uint64_t seed)
{
    struct r1_model_config cfg;
    r1_model_config_preset(&cfg, "tiny");
    struct r1_optim_config oc;
    r1_optim_config_default(&oc);
    oc.lr = 3e-3f;
    oc.schedule = R1_LR_COSINE;
    oc.warmup_steps = 2;
    oc.total_steps = 8;
    struct rig r = {0};
    assert_int_equal(r1_model_create(&r.m, &cfg, be), 0);
    r1_model_init_weights(r.m, seed);
    assert_int_equal(r1_optim_create(&r.o, r.m, &oc), 0);
    assert_int_equal(r1_model_reserve(r.m, 2, 16), 0);
    return r;
}

static void free_rig(struct rig *r)
{
    r1_optim_free(r->o);
    r1_model_free(r->m);
}

static const char corpus[] = "the quick brown fox jumps over the lazy dog; 12+30=42. "
                             "<think>7*6</think><answer>42</answer> lorem ipsum dolor sit";

/* One training step on 2 rows drawn with the data RNG (the state a checkpoint keeps). */
static void train_step(struct rig *r, struct r1_rng *data)
{
    enum { B = 2, T = 16 };
    int32_t tok[B * T], pos[B * T], seg[B * T], tgt[B * T];
    float w[B * T];
    int span = (int)sizeof(corpus) - 1 - T - 1;
    for (int b = 0; b < B; b++) {
        int off = (int)r1_rng_below(data, (uint64_t)span);
        for (int t = 0; t < T; t++) {
            tok[b * T + t] = (unsigned char)corpus[off + t];
            tgt[b * T + t] = (unsigned char)corpus[off + t + 1];
            pos[b * T + t] = t;
            seg[b * T + t] = 0;
            w[b * T + t] = 1.0f;
        }
    }
    struct r1_batch bt = {B, T, tok, pos, seg, tgt};
    double loss;
    assert_int_equal(r1_model_ce_step(r->m, &bt, w, B * T, &loss), 0);
    assert_int_equal(r1_optim_step(r->o), 0);
}

/* Save after 3 steps, load into fresh objects, continue: bit-identical to 6 straight. */
static void test_save_resume_exact(void **state)
{
    (void)state;
    struct rig a = make_rig(42);
    struct r1_rng da = r1_rng_make(42, R1_STREAM_DATA);
    for (int s = 0; s < 6; s++)
        train_step(&a, &da);

    char dir[] = "/tmp/r1-test-optim-XXXXXX";
    assert_non_null(mkdtemp(dir));
    char mdir[600], opath[600];
    snprintf(mdir, sizeof(mdir), "%s/ckpt", dir);
    snprintf(opath, sizeof(opath), "%s/ckpt/optimizer.safetensors", dir);

    struct rig b = make_rig(42);
    struct r1_rng db = r1_rng_make(42, R1_STREAM_DATA);
    for (int s = 0; s < 3; s++)
        train_step(&b, &db);
    assert_int_equal(r1_hfdir_save(b.m, mdir, R1_F32), 0);
    assert_int_equal(r1_optim_save(b.o, opath), 0);
    struct r1_rng saved = db; /* (seed, stream, counter) is the whole state */
    free_rig(&b);

    struct rig c = make_rig(999); /* different init: everything must come from disk */
    struct r1_model *loaded = NULL;
    assert_int_equal(r1_hfdir_load(&loaded, be, mdir), 0);
    memcpy(c.m->param_mem, loaded->param_mem, c.m->params.cap);
    r1_model_free(loaded);
    assert_int_equal(r1_optim_load(c.o, opath), 0);
    assert_int_equal(c.o->step, 3);
    for (int s = 0; s < 3; s++)
        train_step(&c, &saved);

    assert_memory_equal(a.m->param_mem, c.m->param_mem, a.m->params.cap);
    assert_memory_equal(a.o->state.base, c.o->state.base, a.o->state.cap);
    assert_int_equal(a.o->step, c.o->step);
    assert_memory_equal(&da, &saved, sizeof(da));
    free_rig(&a);
    free_rig(&c);
    char cmd[700];
    snprintf(cmd, sizeof(cmd), "rm -rf %s", dir);
    assert_int_equal(system(cmd), 0);
}

/* Two micro-batches of one row with the full batch's denominator give the gradient
 * of one batch of two rows (up to summation order). */
static void test_grad_accumulation(void **state)
{
    (void)state;
    struct rig r = make_rig(5);
    enum { T = 16 };
    int32_t tok[2 * T], pos[2 * T], seg[2 * T], tgt[2 * T];
    float w[2 * T];
    for (int i = 0; i < 2 * T; i++) {
        tok[i] = (unsigned char)corpus[i * 2];
        tgt[i] = (unsigned char)corpus[i * 2 + 1];
        pos[i] = i % T;
        seg[i] = 0;
        w[i] = 1.0f;
    }
    double loss;
    struct r1_batch full = {2, T, tok, pos, seg, tgt};
    r1_model_zero_grad(r.m);
    assert_int_equal(r1_model_ce_step(r.m, &full, w, 2 * T, &loss), 0);
    size_t n = r.m->grads.cap / sizeof(float);
    float *g1 = malloc(n * sizeof(float));
    memcpy(g1, r.m->grad_mem, n * sizeof(float));
    r1_model_zero_grad(r.m);
    for (int b = 0; b < 2; b++) {
        struct r1_batch one = {1, T, tok + b * T, pos + b * T, seg + b * T, tgt + b * T};
        assert_int_equal(r1_model_ce_step(r.m, &one, w, 2 * T, &loss), 0);
    }
    double num = 0, den = 0;
    for (size_t i = 0; i < n; i++) {
        num += ((double)g1[i] - r.m->grad_mem[i]) * ((double)g1[i] - r.m->grad_mem[i]);
        den += (double)g1[i] * g1[i];
    }
    /* only summation order differs: relative difference at f32 rounding level */
    assert_true(sqrt(num) <= 1e-5 * sqrt(den));
    free(g1);
    free_rig(&r);
}

/* Clipping: after one step, exp_avg = (1-β1)·g·max_norm/||g||. */
static void test_clipping(void **state)
{
    (void)state;
    struct rig r = make_rig(6);
    r.o->cfg.max_grad_norm = 1e-3f;
    size_t n = r.m->grads.cap / sizeof(float);
    for (size_t i = 0; i < n; i++)
        r.m->grad_mem[i] = (float)((int)(i % 13) - 6) * 0.01f;
    float *g = malloc(n * sizeof(float));
    memcpy(g, r.m->grad_mem, n * sizeof(float));
    double ss = 0;
    for (size_t i = 0; i < n; i++)
        ss += (double)g[i] * g[i];
    assert_int_equal(r1_optim_step(r.o), 0);
    assert_float_equal(r.o->last_grad_norm, sqrt(ss), 1e-6 * sqrt(ss));
    double scale = 1e-3 / (sqrt(ss) + 1e-6);
    for (size_t i = 0; i < n; i += 101)
        assert_float_equal(r.o->mom[i], 0.1 * g[i] * scale, 1e-9);
    /* gradients are zeroed by the step */
    for (size_t i = 0; i < n; i += 101)
        assert_true(r.m->grad_mem[i] == 0.0f);
    free(g);
    free_rig(&r);
}

static void test_nonfinite_gradient(void **state)
{
    (void)state;
    struct rig r = make_rig(7);
    size_t bytes = r.m->params.cap;
    float *before = malloc(bytes);
    memcpy(before, r.m->param_mem, bytes);
    r.m->grad_mem[10] = NAN;
    assert_int_equal(r1_optim_step(r.o), R1_ENUMERIC);
    assert_memory_equal(before, r.m->param_mem, bytes);
    assert_int_equal(r.o->step, 0);
    free(before);
    free_rig(&r);
}

static void test_load_mismatch(void **state)
{
    (void)state;
    struct rig r = make_rig(8);
    assert_int_equal(r1_optim_load(r.o, "/nonexistent/optimizer.safetensors"), R1_EIO);
    free_rig(&r);
}

/* Precision bf16: every update writes the bf16 working copy with the f32 master weights
 * (element for element their rounding), so the forward that follows converts nothing, and
 * it gives the bits of a model that made its copy from the same weights itself. */
static void test_bf16_working_copy(void **state)
{
    (void)state;
    struct rig a = make_rig(7);
    assert_int_equal(r1_model_set_precision(a.m, R1_BF16), 0);
    assert_int_equal(r1_model_reserve(a.m, 2, 16), 0);
    struct r1_rng da = r1_rng_make(7, R1_STREAM_DATA);
    size_t nf = a.m->params.cap / sizeof(float);
    float *p = malloc(a.m->params.cap);
    uint16_t *w16 = malloc(nf * sizeof(uint16_t));
    for (int s = 0; s < 3; s++) {
        train_step(&a, &da);
        assert_true(a.m->w16_fresh);
        a.m->be->ops->download(a.m->be->ctx, p, a.m->param_mem, a.m->params.cap);
        a.m->be->ops->download(a.m->be->ctx, w16, a.m->w16_mem, nf * sizeof(uint16_t));
        for (int k = 0; k < a.m->n_tensors; k++) {
            int64_t off = (float *)a.m->tensors[k].w.data - a.m->param_mem;
            int64_t n = r1_tensor_numel(&a.m->tensors[k].w);
            for (int64_t i = off; i < off + n; i++)
                if (w16[i] != r1_f32_to_bf16(p[i]))
                    fail_msg("after update %d, %s[%lld]: bf16 copy 0x%04x, bf16 of the weight "
                             "0x%04x", s + 1, a.m->tensors[k].name, (long long)(i - off),
                             w16[i], r1_f32_to_bf16(p[i]));
        }
    }
    /* a fresh model given the weights makes its own copy: the same forward */
    struct rig b = make_rig(99);
    assert_int_equal(r1_model_set_precision(b.m, R1_BF16), 0);
    assert_int_equal(r1_model_reserve(b.m, 2, 16), 0);
    b.m->be->ops->upload(b.m->be->ctx, b.m->param_mem, p, b.m->params.cap);
    r1_model_params_changed(b.m);
    assert_false(b.m->w16_fresh);
    enum { B = 2, T = 16 };
    int32_t tok[B * T], pos[B * T], seg[B * T];
    for (int i = 0; i < B * T; i++)
        tok[i] = (unsigned char)corpus[i], pos[i] = i % T, seg[i] = 0;
    struct r1_batch bt = {B, T, tok, pos, seg, tok};
    float la[B * T], lb[B * T];
    assert_int_equal(r1_model_forward(a.m, &bt, la, NULL), 0);
    assert_int_equal(r1_model_forward(b.m, &bt, lb, NULL), 0);
    assert_true(b.m->w16_fresh);
    assert_memory_equal(la, lb, sizeof(la));
    free(p), free(w16);
    free_rig(&a), free_rig(&b);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_schedules),
        cmocka_unit_test(test_save_resume_exact),
        cmocka_unit_test(test_grad_accumulation),
        cmocka_unit_test(test_clipping),
        cmocka_unit_test(test_nonfinite_gradient),
        cmocka_unit_test(test_load_mismatch),
        cmocka_unit_test(test_bf16_working_copy),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
