/* test-grpo-loss.c - the GRPO objective against numbers worked out by hand (each case
 * says how), its gradient against finite differences, the four aggregation rules and
 * group advantages (all-equal groups give exactly 0, never NaN).  The token loss is the
 * CPU backend's pg_loss op (the reference the CUDA op is tested against in test-cuda). */
#include <math.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include "core/backend.h"
#include "stages/grpo-loss.h"

#define NEAR(a, b, tol) assert_true(fabs((double)(a) - (double)(b)) <= (tol))

static struct r1_backend *cpu; /* its memory is host memory */

/* N token slots */
struct tokens {
    int N;
    const float *logp, *old_logp, *ref_logp, *entropy, *adv, *weight;
};

static void token_loss(const struct r1_pg_cfg *cfg, const struct tokens *t, float *dlogp,
                       float *dentropy, struct r1_pg_stats *st)
{
    cpu->ops->pg_loss(cpu->ctx, dlogp, dentropy, st, t->logp, t->old_logp, t->ref_logp,
                      t->entropy, t->adv, t->weight, cfg, t->N);
}

/* Five tokens, weight 1, ε_low = ε_high = 0.2, β = 0:
 *  a: ρ=1.5, A=+1: ρA=1.5, clip(ρ)A=1.2 → min 1.2 (clipped high): ℓ=-1.2, ∂ℓ/∂logp=0
 *  b: ρ=0.5, A=-1: ρA=-0.5, clip(ρ)A=-0.8 → min -0.8 (clipped low): ℓ=0.8, grad 0
 *  c: ρ=1.5, A=-1: ρA=-1.5, clip(ρ)A=-1.2 → min -1.5 (unclipped): ℓ=1.5, grad -ρA=1.5
 *  d: ρ=0.5, A=+2: ρA=1.0, clip(ρ)A=1.6 → min 1.0 (unclipped): ℓ=-1.0, grad -1.0
 *  e: ρ=1, A=0.5: ℓ=-0.5, grad -0.5
 * Σℓ = -1.2+0.8+1.5-1.0-0.5 = -0.4; one token clipped low (b), one high (a). */
static void test_clipping_both_sides(void **state)
{
    (void)state;
    const float logp[5] = {0, 0, 0, 0, 0};
    const float old[5] = {-logf(1.5f), -logf(0.5f), -logf(1.5f), -logf(0.5f), 0};
    const float adv[5] = {1, -1, -1, 2, 0.5f};
    const float w[5] = {1, 1, 1, 1, 1};
    struct r1_pg_cfg cfg = {0.2f, 0.2f, 0.0f, 0.0f};
    struct tokens t = {5, logp, old, NULL, NULL, adv, w};
    float d[5];
    struct r1_pg_stats st = {0};
    token_loss(&cfg, &t, d, NULL, &st);
    NEAR(st.loss, -0.4, 1e-6);
    NEAR(d[0], 0, 0);
    NEAR(d[1], 0, 0);
    NEAR(d[2], 1.5, 1e-6);
    NEAR(d[3], -1.0, 1e-6);
    NEAR(d[4], -0.5, 1e-6);
    NEAR(st.clip_low, 1, 0);
    NEAR(st.clip_high, 1, 0);
    NEAR(st.n_tokens, 5, 0);
    /* asymmetric (DAPO clip-higher) ε_high = 0.6 lets token a through: ℓ=-1.5, grad -1.5 */
    cfg.epsilon_high = 0.6f;
    st = (struct r1_pg_stats){0};
    token_loss(&cfg, &t, d, NULL, &st);
    NEAR(st.loss, -0.7, 1e-6);
    NEAR(d[0], -1.5, 1e-6);
    NEAR(st.clip_high, 0, 0);
}

/* β = 0.1, ρ = 1, A = 0, so ℓ = β·k3 alone:
 *  ref − logp = ln 2:  k3 = 2 − ln 2 − 1 = 0.3068528; ℓ = 0.03068528; grad β(1−2) = −0.1
 *  ref − logp = −ln 2: k3 = 0.5 + ln 2 − 1 = 0.1931472; ℓ = 0.01931472; grad β(1−0.5) = 0.05
 * With weights 0.5 each: loss = 0.5·(0.03068528 + 0.01931472) = 0.025, grads halved. */
static void test_kl_k3(void **state)
{
    (void)state;
    const float logp[2] = {-1.0f, -1.0f};
    const float ref[2] = {-1.0f + logf(2.0f), -1.0f - logf(2.0f)};
    const float adv[2] = {0, 0}, w[2] = {0.5f, 0.5f};
    struct r1_pg_cfg cfg = {0.2f, 0.2f, 0.1f, 0.0f};
    struct tokens t = {2, logp, NULL, ref, NULL, adv, w};
    float d[2];
    struct r1_pg_stats st = {0};
    token_loss(&cfg, &t, d, NULL, &st);
    NEAR(st.loss, 0.025, 1e-6);
    NEAR(d[0], -0.05, 1e-6);
    NEAR(d[1], 0.025, 1e-6);
    NEAR(st.kl, 0.3068528 + 0.1931472, 1e-6);
    /* k3 is 0 where the policy equals the reference */
    const float same[2] = {-1.0f, -1.0f};
    t.ref_logp = same;
    st = (struct r1_pg_stats){0};
    token_loss(&cfg, &t, d, NULL, &st);
    NEAR(st.kl, 0, 0);
    NEAR(d[0], 0, 0);
}

/* Entropy bonus c = 0.01 with H = 2: ℓ = −0.02, ∂ℓ/∂H = −0.01 (times w = 1). */
static void test_entropy_bonus(void **state)
{
    (void)state;
    const float logp[1] = {-0.5f}, H[1] = {2.0f}, adv[1] = {0}, w[1] = {1};
    struct r1_pg_cfg cfg = {0.2f, 0.2f, 0.0f, 0.01f};
    struct tokens t = {1, logp, NULL, NULL, H, adv, w};
    float d[1], dh[1];
    struct r1_pg_stats st = {0};
    token_loss(&cfg, &t, d, dh, &st);
    NEAR(st.loss, -0.02, 1e-7);
    NEAR(dh[0], -0.01, 1e-7);
    NEAR(st.entropy, 2.0, 0);
}

/* ∂ℓ/∂logp by central differences at points away from the clip kinks, with β > 0. */
static void test_gradient_fd(void **state)
{
    (void)state;
    enum { N = 6 };
    float logp[N] = {-0.3f, -1.2f, -2.0f, -0.7f, -0.05f, -3.0f};
    const float old[N] = {-0.4f, -1.0f, -2.5f, -0.2f, -0.05f, -2.9f};
    const float ref[N] = {-0.9f, -0.8f, -1.5f, -0.7f, -0.3f, -3.5f};
    const float adv[N] = {0.7f, -1.3f, 0.4f, -0.6f, 1.1f, -0.2f};
    const float w[N] = {0.25f, 0.25f, 0.1f, 0.1f, 0.1f, 0.2f};
    struct r1_pg_cfg cfg = {0.2f, 0.28f, 0.05f, 0.0f};
    float d[N], dd[N];
    struct tokens t = {N, logp, old, ref, NULL, adv, w};
    struct r1_pg_stats st = {0};
    token_loss(&cfg, &t, d, NULL, &st);
    const float h = 1e-3f;
    for (int i = 0; i < N; i++) {
        float keep = logp[i];
        struct r1_pg_stats sp = {0}, sm = {0};
        logp[i] = keep + h;
        token_loss(&cfg, &t, dd, NULL, &sp);
        logp[i] = keep - h;
        token_loss(&cfg, &t, dd, NULL, &sm);
        logp[i] = keep;
        double fd = (sp.loss - sm.loss) / (2.0 * h);
        if (fabs(fd - d[i]) > 1e-3)
            fail_msg("token %d: fd %g, analytic %g", i, fd, d[i]);
    }
}

/* Two sequences of 2 and 4 scored tokens in one update, ρ = 1, A = +1 and −0.25, so
 * ℓ = −A per token: sequence sums −2 and +1.
 *  grpo:    per-sequence means −1 and +0.25, mean over 2 → −0.375 (w = 1/4, 1/8)
 *  bnpo:    (−2 + 1) / 6 tokens → −1/6
 *  dr_grpo: (−2 + 1) / (2 sequences · max_len 8) → −1/16
 *  dapo:    (−2 + 1) / 12 tokens in the generation batch → −1/12 */
static void test_aggregation(void **state)
{
    (void)state;
    const enum r1_grpo_loss types[4] = {R1_GRPO_LOSS_GRPO, R1_GRPO_LOSS_BNPO,
                                        R1_GRPO_LOSS_DR_GRPO, R1_GRPO_LOSS_DAPO};
    const double want[4] = {-0.375, -1.0 / 6, -1.0 / 16, -1.0 / 12};
    const float logp[6] = {0};
    const float adv[6] = {1, 1, -0.25f, -0.25f, -0.25f, -0.25f};
    for (int k = 0; k < 4; k++) {
        float w[6], d[6];
        for (int i = 0; i < 6; i++) {
            struct r1_grpo_norm n = {i < 2 ? 2 : 4, 2, 6, 1, 12, 8};
            w[i] = (float)r1_grpo_seq_weight(types[k], &n);
        }
        struct r1_pg_cfg cfg = {0.2f, 0.2f, 0, 0};
        struct tokens t = {6, logp, NULL, NULL, NULL, adv, w};
        struct r1_pg_stats st = {0};
        token_loss(&cfg, &t, d, NULL, &st);
        if (fabs(st.loss - want[k]) > 1e-6)
            fail_msg("loss type %d: %g, want %g", k, st.loss, want[k]);
    }
    struct r1_grpo_norm empty = {0, 2, 0, 1, 0, 8};
    assert_true(r1_grpo_seq_weight(R1_GRPO_LOSS_GRPO, &empty) == 0.0);
    assert_true(r1_grpo_seq_weight(R1_GRPO_LOSS_DAPO, &empty) == 0.0);
}

/* Group [1,0,0,1]: mean 0.5, std 0.5 → A = ±0.5/(0.5+1e-4) = ±0.99980004.  All-equal
 * groups give exactly 0 (no 0/0).  Batch scaling of [1,0] [0,0]: mean 0.25, std
 * sqrt(0.1875) = 0.4330127 → A = ±0.5/0.4331127 = ±1.1544313 in the first group. */
static void test_advantages(void **state)
{
    (void)state;
    const float r[8] = {1, 0, 0, 1, 0.3f, 0.3f, 0.3f, 0.3f};
    float a[8], sd[2];
    r1_grpo_advantages(r, 2, 4, R1_GRPO_SCALE_GROUP, a, sd);
    NEAR(a[0], 0.99980004, 1e-6);
    NEAR(a[1], -0.99980004, 1e-6);
    for (int i = 4; i < 8; i++)
        assert_true(a[i] == 0.0f);
    NEAR(sd[0], 0.5, 1e-7);
    assert_true(sd[1] == 0.0f);
    const float r2[4] = {1, 0, 0, 0};
    r1_grpo_advantages(r2, 2, 2, R1_GRPO_SCALE_BATCH, a, NULL);
    NEAR(a[0], 1.1544313, 1e-5);
    NEAR(a[1], -1.1544313, 1e-5);
    assert_true(a[2] == 0.0f && a[3] == 0.0f);
    r1_grpo_advantages(r2, 2, 2, R1_GRPO_SCALE_NONE, a, NULL);
    NEAR(a[0], 0.5, 0);
    NEAR(a[1], -0.5, 0);
    /* G identical huge rewards: still exactly 0 */
    const float big[3] = {1e30f, 1e30f, 1e30f};
    r1_grpo_advantages(big, 1, 3, R1_GRPO_SCALE_GROUP, a, NULL);
    assert_true(a[0] == 0.0f && a[1] == 0.0f && a[2] == 0.0f);
}

/* max_len 100, buffer 20, penalty 1: 0 up to 80, −0.5 at 90, −1 at 100 (and beyond). */
static void test_overlong(void **state)
{
    (void)state;
    NEAR(r1_grpo_overlong_penalty(80, 100, 20, 1.0), 0, 0);
    NEAR(r1_grpo_overlong_penalty(90, 100, 20, 1.0), -0.5, 1e-12);
    NEAR(r1_grpo_overlong_penalty(100, 100, 20, 1.0), -1.0, 1e-12);
    NEAR(r1_grpo_overlong_penalty(120, 100, 20, 1.0), -1.0, 1e-12);
    NEAR(r1_grpo_overlong_penalty(99, 100, 0, 1.0), 0, 0);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_clipping_both_sides), cmocka_unit_test(test_kl_k3),
        cmocka_unit_test(test_entropy_bonus),       cmocka_unit_test(test_gradient_fd),
        cmocka_unit_test(test_aggregation),         cmocka_unit_test(test_advantages),
        cmocka_unit_test(test_overlong),
    };
    if (r1_backend_create(&cpu, R1_BACKEND_CPU, 1))
        return 1;
    int failed = cmocka_run_group_tests(tests, NULL, NULL);
    r1_backend_free(cpu);
    return failed;
}
