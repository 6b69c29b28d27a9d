/* test-reward-model.c - the reward model: the Bradley-Terry loss against hand-computed
 * values (and extreme margins), the encoding (template, EOS, front truncation), the
 * scorer against the training forward and across an HF-dir save/load, the prefs
 * generator (a pinned example, determinism, disjoint splits) and the trainer's
 * save/load (a resumed trainer continues bit-identically). */
#include <math.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cmocka.h>

#include "core/backend.h"
#include "core/err.h"
#include "core/hfdir.h"
#include "core/model.h"
#include "core/tokenizer.h"
#include "stages/data/gen.h"
#include "stages/reward_model.h"

static struct r1_backend *be;
static struct r1_tokenizer *tok;
static char dir[] = "/tmp/r1-test-rm-XXXXXX";

static int setup(void **state)
{
    (void)state;
    if (!mkdtemp(dir) || r1_backend_create(&be, R1_BACKEND_CPU, 0) ||
        r1_tokenizer_bytes_create(&tok))
        return -1;
    return 0;
}

static int teardown(void **state)
{
    (void)state;
    char cmd[128];
    snprintf(cmd, sizeof(cmd), "rm -rf %s", dir);
    r1_tokenizer_free(tok);
    r1_backend_free(be);
    return system(cmd);
}

/* A tiny score model with fixed weights. */
static struct r1_model *score_model(uint64_t seed)
{
    struct r1_model_config c;
    r1_model_config_preset(&c, "tiny");
    c.num_labels = 1;
    struct r1_model *m = NULL;
    assert_int_equal(r1_model_create(&m, &c, be), 0);
    assert_int_equal(r1_model_init_weights(m, seed), 0);
    return m;
}

/* ---- the loss -------------------------------------------------------------------- */

static void test_bt_loss(void **state)
{
    (void)state;
    /* Pair 0: rc 2, rr 1, margin 0.5 -> x = 0.5;  pair 1: rc 0, rr 0.5 -> x = -1.
     * -log σ(0.5) = log(1 + e^-0.5) = log(1.6065306597) = 0.4740769842
     * -log σ(-1)  = log(1 + e)      = log(3.7182818285) = 1.3132616875
     * mean = (0.4740769842 + 1.3132616875) / 2 = 0.8936693359
     * σ(-0.5) = 1 / (1 + e^0.5) = 0.3775406688;  σ(1) = 0.7310585786
     * drc = -σ(-x)/2 = (-0.1887703344, -0.3655292893);  drr = -drc. */
    const float rc[2] = {2.0f, 0.0f}, rr[2] = {1.0f, 0.5f};
    float drc[2], drr[2];
    double L = r1_rm_bt_loss(2, rc, rr, 0.5f, 2.0, drc, drr);
    assert_true(fabs(L - 0.8936693359) < 1e-9);
    assert_true(fabsf(drc[0] - -0.1887703344f) < 1e-7f);
    assert_true(fabsf(drc[1] - -0.3655292893f) < 1e-7f);
    assert_true(drr[0] == -drc[0] && drr[1] == -drc[1]);
    /* a finite difference of the loss in rc[0] agrees with drc[0] */
    float rcp[2] = {2.0f + 1e-3f, 0.0f}, rcm[2] = {2.0f - 1e-3f, 0.0f};
    double fd = (r1_rm_bt_loss(2, rcp, rr, 0.5f, 2.0, NULL, NULL) -
                 r1_rm_bt_loss(2, rcm, rr, 0.5f, 2.0, NULL, NULL)) /
                2e-3;
    assert_true(fabs(fd - drc[0]) < 1e-5);
    /* extreme margins: no overflow, no NaN.  x = +2000: loss e^-2000 = 0, gradient 0;
     * x = -2000: loss 2000, gradient -1 (one pair, denom 1). */
    const float big_c[2] = {1000.0f, -1000.0f}, big_r[2] = {-1000.0f, 1000.0f};
    L = r1_rm_bt_loss(1, big_c, big_r, 0.0f, 1.0, drc, drr);
    assert_true(L == 0.0 && drc[0] == -0.0f && drr[0] == 0.0f);
    L = r1_rm_bt_loss(1, big_c + 1, big_r + 1, 0.0f, 1.0, drc, drr);
    assert_true(fabs(L - 2000.0) < 1e-9 && drc[0] == -1.0f && drr[0] == 1.0f);
    L = r1_rm_bt_loss(2, big_c, big_r, 0.0f, 2.0, drc, drr);
    assert_true(isfinite(L) && isfinite(drc[0]) && isfinite(drc[1]));
}

static void test_bce_loss(void **state)
{
    (void)state;
    /* Item 0: s = 1, safe (y 1) -> softplus(-1) = log(1 + e^-1) = 0.3132616875;
     * item 1: s = 0.5, unsafe (y 0) -> softplus(0.5) = log(1 + e^0.5) = 0.9740769842.
     * mean over denom 2 = 0.6436693359.
     * ds = (σ(s) - y) / 2: σ(1) = 0.7310585786 -> -0.1344707107;
     *                      σ(0.5) = 0.6224593312 -> 0.3112296656. */
    const float sc[2] = {1.0f, 0.5f};
    const int8_t y[2] = {1, 0};
    float ds[2];
    double L = r1_rm_bce_loss(2, sc, y, 2.0, ds);
    assert_true(fabs(L - 0.6436693359) < 1e-9);
    assert_true(fabsf(ds[0] - -0.1344707107f) < 1e-7f);
    assert_true(fabsf(ds[1] - 0.3112296656f) < 1e-7f);
    /* central differences of the loss in each score agree with ds */
    for (int i = 0; i < 2; i++) {
        float p[2] = {sc[0], sc[1]}, m[2] = {sc[0], sc[1]};
        p[i] += 1e-3f;
        m[i] -= 1e-3f;
        double fd = (r1_rm_bce_loss(2, p, y, 2.0, NULL) - r1_rm_bce_loss(2, m, y, 2.0, NULL)) / 2e-3;
        assert_true(fabs(fd - ds[i]) < 1e-5);
    }
    /* extreme logits: no overflow.  A confident right answer costs ~0 with gradient ~0, a
     * confident wrong one costs |s| with gradient ±1. */
    const float big[2] = {1000.0f, -1000.0f};
    const int8_t yy[2] = {1, 1};
    L = r1_rm_bce_loss(1, big, yy, 1.0, ds);
    assert_true(L == 0.0 && ds[0] == 0.0f);
    L = r1_rm_bce_loss(1, big + 1, yy + 1, 1.0, ds);
    assert_true(fabs(L - 1000.0) < 1e-9 && ds[0] == -1.0f);
}

static void test_auc(void **state)
{
    (void)state;
    /* positives {0.9, 0.4, 0.4}, negatives {0.4, 0.1}: pairs (P, N) won / tied / lost:
     * 0.9 beats both (2), 0.4 ties 0.4 and beats 0.1 (0.5 + 1) twice -> 2 + 1.5 + 1.5 = 5
     * of 6 -> AUC 5/6 */
    const float s[5] = {0.9f, 0.4f, 0.4f, 0.4f, 0.1f};
    const int8_t y[5] = {1, 1, 1, 0, 0};
    assert_true(fabs(r1_rm_auc(5, s, y) - 5.0 / 6.0) < 1e-12);
    const int8_t flip[5] = {0, 0, 0, 1, 1};
    assert_true(fabs(r1_rm_auc(5, s, flip) - 1.0 / 6.0) < 1e-12);
    const int8_t one_class[5] = {1, 1, 1, 1, 1};
    assert_true(r1_rm_auc(5, s, one_class) == 0.5);
}

static void test_safety_generator(void **state)
{
    (void)state;
    struct r1_datagen *g = NULL;
    assert_int_equal(r1_datagen_parse(&g, "safety:digits=1"), 0);
    /* both labels; unsafe ones carry one of the harmful sentences in the named place, safe
     * ones a harmless sentence (about as long); the prompt and answer are arith's; eval
     * prompts are never train prompts; deterministic by seed */
    int unsafe = 0, in_think = 0;
    size_t len[2] = {0, 0};
    int cnt[2] = {0, 0};
    char train_prompts[300][32];
    for (int i = 0; i < 300; i++) {
        json_t *a = NULL, *b = NULL;
        assert_int_equal(r1_datagen_example(g, 4, R1_SPLIT_TRAIN, i, &a), 0);
        assert_int_equal(r1_datagen_example(g, 4, R1_SPLIT_TRAIN, i, &b), 0);
        assert_true(json_equal(a, b));
        const char *resp = json_string_value(json_object_get(a, "response"));
        const char *label = json_string_value(json_object_get(a, "label"));
        const char *where = json_string_value(json_object_get(a, "where"));
        const char *kind = json_string_value(json_object_get(a, "unsafe_kind"));
        assert_non_null(resp);
        int bad = strcmp(label, "unsafe") == 0;
        assert_true(bad || strcmp(label, "safe") == 0);
        assert_true(bad == (kind[0] != '\0'));
        const char *think_end = strstr(resp, "</think>");
        assert_non_null(think_end);
        const char *extra = strstr(resp, "Also,") ? strstr(resp, "Also,") : strstr(resp, "By the way");
        assert_non_null(extra);
        assert_true(strcmp(where, "think") == 0 ? extra < think_end : extra > think_end);
        in_think += strcmp(where, "think") == 0;
        unsafe += bad;
        len[bad] += strlen(resp);
        cnt[bad]++;
        snprintf(train_prompts[i], sizeof(train_prompts[i]), "%s",
                 json_string_value(json_object_get(a, "prompt")));
        json_decref(a);
        json_decref(b);
    }
    assert_true(unsafe > 100 && unsafe < 200);
    assert_true(in_think > 100 && in_think < 200);
    /* lengths overlap: mean lengths of the two classes within 15% of each other */
    double ms = (double)len[0] / cnt[0], mu = (double)len[1] / cnt[1];
    assert_true(fabs(ms - mu) < 0.15 * ms);
    for (int i = 0; i < 30; i++) {
        json_t *e = NULL;
        assert_int_equal(r1_datagen_example(g, 4, R1_SPLIT_EVAL, i, &e), 0);
        const char *ep = json_string_value(json_object_get(e, "prompt"));
        for (int k = 0; k < 300; k++)
            assert_true(strcmp(ep, train_prompts[k]) != 0);
        json_decref(e);
    }
    r1_datagen_free(g);
    /* knobs */
    assert_int_equal(r1_datagen_parse(&g, "safety:where=think,unsafe=1"), 0);
    json_t *o = NULL;
    assert_int_equal(r1_datagen_example(g, 1, R1_SPLIT_TRAIN, 3, &o), 0);
    assert_string_equal(json_string_value(json_object_get(o, "label")), "unsafe");
    assert_string_equal(json_string_value(json_object_get(o, "where")), "think");
    json_decref(o);
    r1_datagen_free(g);
    assert_int_equal(r1_datagen_parse(&g, "safety:where=middle"), R1_EINVAL);
    assert_non_null(strstr(r1_err_last(), "think, answer or any"));
    assert_int_equal(r1_datagen_parse(&g, "safety:wrong=0.2"), R1_EINVAL);
}

/* ---- encoding -------------------------------------------------------------------- */

static void test_encode(void **state)
{
    (void)state;
    int32_t *ids = NULL;
    int n = 0;
    /* "Q?" + "A" + EOS, no template */
    assert_int_equal(r1_rm_encode(tok, NULL, "Q?", "A", 256, 64, &ids, &n), 0);
    assert_int_equal(n, 4);
    assert_true(ids[0] == 'Q' && ids[1] == '?' && ids[2] == 'A' && ids[3] == 256);
    free(ids);
    /* a literal template, no EOS */
    assert_int_equal(r1_rm_encode(tok, "U: {prompt} A:", "hi", "yo", -1, 64, &ids, &n), 0);
    char text[64] = {0};
    for (int i = 0; i < n; i++)
        text[i] = (char)ids[i];
    assert_string_equal(text, "U: hi A:yo");
    free(ids);
    /* too long: the front of the prompt goes, the response end and EOS stay */
    assert_int_equal(r1_rm_encode(tok, NULL, "abcdef", "XYZ", 256, 5, &ids, &n), 0);
    assert_int_equal(n, 5);
    assert_true(ids[0] == 'f' && ids[1] == 'X' && ids[3] == 'Z' && ids[4] == 256);
    free(ids);
    /* shorter than the response: its end stays */
    assert_int_equal(r1_rm_encode(tok, NULL, "abc", "UVWXYZ", 256, 3, &ids, &n), 0);
    assert_true(n == 3 && ids[0] == 'Y' && ids[1] == 'Z' && ids[2] == 256);
    free(ids);
    assert_int_equal(r1_rm_encode(tok, "no key", "a", "b", 256, 8, &ids, &n), R1_EINVAL);
    assert_int_equal(r1_rm_encode(tok, NULL, "a", "b", 256, 0, &ids, &n), R1_EINVAL);
    assert_int_equal(r1_rm_encode(tok, NULL, "", "", -1, 8, &ids, &n), R1_EINVAL);
    assert_null(ids);
}

/* ---- generator ------------------------------------------------------------------- */

static void test_prefs_generator(void **state)
{
    (void)state;
    struct r1_datagen *g = NULL;
    assert_int_equal(r1_datagen_parse(&g, "prefs:digits=1"), 0);
    json_t *o = NULL;
    assert_int_equal(r1_datagen_example(g, 1, R1_SPLIT_TRAIN, 0, &o), 0);
    char *d = json_dumps(o, JSON_COMPACT | JSON_PRESERVE_ORDER);
    /* a pinned example: generation must not drift between versions */
    assert_string_equal(d, "{\"prompt\":\"What is 8+9?\",\"chosen\":\"<think>\\n8+9 = "
                           "17\\n</think>\\n<answer>\\n17\\n</answer>\",\"rejected\":\"<think>\\n"
                           "8+9 = 16\\n</think>\\n<answer>\\n16\\n</answer>\",\"answer\":\"17\","
                           "\"rejected_kind\":\"wrong\"}");
    free(d);
    json_decref(o);
    /* deterministic; both kinds occur; rambling is longer and keeps the right answer;
     * no eval prompt is a train prompt */
    int kinds[2] = {0, 0};
    char train_prompts[200][32];
    for (int i = 0; i < 200; i++) {
        json_t *a = NULL, *b = NULL;
        assert_int_equal(r1_datagen_example(g, 5, R1_SPLIT_TRAIN, i, &a), 0);
        assert_int_equal(r1_datagen_example(g, 5, R1_SPLIT_TRAIN, i, &b), 0);
        assert_true(json_equal(a, b));
        const char *ch = json_string_value(json_object_get(a, "chosen"));
        const char *rj = json_string_value(json_object_get(a, "rejected"));
        const char *ans = json_string_value(json_object_get(a, "answer"));
        const char *kind = json_string_value(json_object_get(a, "rejected_kind"));
        char tail[64];
        snprintf(tail, sizeof(tail), "<answer>\n%s\n</answer>", ans);
        assert_non_null(strstr(ch, tail));
        assert_true(strcmp(ch, rj) != 0);
        if (strcmp(kind, "ramble") == 0) {
            kinds[1]++;
            assert_non_null(strstr(rj, tail));
            assert_true(strlen(rj) > strlen(ch) + 40);
        } else {
            kinds[0]++;
            assert_null(strstr(rj, tail));
        }
        snprintf(train_prompts[i], sizeof(train_prompts[i]), "%s",
                 json_string_value(json_object_get(a, "prompt")));
        json_decref(a);
        json_decref(b);
    }
    assert_true(kinds[0] > 60 && kinds[1] > 60); /* wrong=0.5 by default */
    for (int i = 0; i < 20; i++) {
        json_t *e = NULL;
        assert_int_equal(r1_datagen_example(g, 5, R1_SPLIT_EVAL, i, &e), 0);
        for (int k = 0; k < 200; k++)
            assert_string_not_equal(train_prompts[k],
                                    json_string_value(json_object_get(e, "prompt")));
        json_decref(e);
    }
    r1_datagen_free(g);
    assert_int_equal(r1_datagen_parse(&g, "prefs:wrong=1.5"), R1_EINVAL);
    assert_int_equal(r1_datagen_parse(&g, "prefs:demo=1"), R1_EINVAL);
    assert_non_null(strstr(r1_err_last(), "prefs: unknown knob 'demo'"));
    assert_int_equal(r1_datagen_parse(&g, "prefs:wrong=0"), 0);
    for (int i = 0; i < 20; i++) {
        assert_int_equal(r1_datagen_example(g, 2, R1_SPLIT_TRAIN, i, &o), 0);
        assert_string_equal(json_string_value(json_object_get(o, "rejected_kind")), "ramble");
        json_decref(o);
    }
    r1_datagen_free(g);
}

/* ---- scorer vs training forward ------------------------------------------------- */

static const char *prompts[] = {"What is 1+2?", "What is 7-3?", "What is 4+4?", "What is 9+0?",
                                "What is 5-8?", "What is 2+6?", "What is 3+3?", "What is 6-1?",
                                "What is 8+8?", "What is 0+5?"};
static const char *responses[] = {
    "<think>\n1+2 = 3\n</think>\n<answer>\n3\n</answer>",
    "<think>\n7-3 = 5\n</think>\n<answer>\n5\n</answer>",
    "<answer>\n8\n</answer>",
    "<think>\n9+0 = 9\nWait, let me check that again.\n9+0 = 9\n</think>\nSo "
    "9.\n<answer>\n9\n</answer>",
    "-3",
    "<think>\n2+6 = 8\n</think>\n<answer>\n8\n</answer>",
    "six",
    "<think>\n6-1 = 5\n</think>\n<answer>\n5\n</answer>",
    "<think>\n8+8 = 16\n</think>\n<answer>\n16\n</answer>",
    "<think>\n0+5 = 5\n</think>\n<answer>\n4\n</answer>",
};
#define N_TEXTS 10

static const char *write_pairs(const char *name, int n_pairs)
{
    static char path[256];
    snprintf(path, sizeof(path), "%s/%s", dir, name);
    FILE *f = fopen(path, "w");
    assert_non_null(f);
    for (int i = 0; i < n_pairs; i++) {
        json_t *o = json_pack("{s:s, s:s, s:s}", "q", prompts[i % N_TEXTS], "good",
                              responses[i % N_TEXTS], "bad", responses[(i + 3) % N_TEXTS]);
        char *d = json_dumps(o, JSON_COMPACT | JSON_PRESERVE_ORDER);
        fprintf(f, "%s\n", d);
        free(d);
        json_decref(o);
    }
    fclose(f);
    return path;
}

static struct r1_rm_config base_config(const char *train_path, const char *eval_path)
{
    struct r1_rm_config c = {0};
    c.steps = 6;
    c.batch_size = 4;
    c.micro_batch_size = 2;
    c.seq_len = 64;
    c.seed = 3;
    c.margin = 0.0f;
    c.template_ = "Q: {prompt}\n";
    r1_optim_config_default(&c.optim);
    c.optim.lr = 1e-3f;
    c.train = (struct r1_rm_data_spec){train_path, NULL, 0, 0, R1_SPLIT_TRAIN, "q", "good", "bad",
                                       false, NULL, NULL};
    c.eval = (struct r1_rm_data_spec){eval_path, NULL, 0, 0, R1_SPLIT_EVAL, "q", "good", "bad",
                                      false, NULL, NULL};
    return c;
}

static void test_scorer_matches_training(void **state)
{
    (void)state;
    struct r1_model *m = score_model(21);
    const char *tmpl = "Q: {prompt}\n";
    /* one text at a time through the model, encoded as the trainer encodes */
    float one[N_TEXTS];
    assert_int_equal(r1_model_reserve(m, 1, 64), 0);
    for (int i = 0; i < N_TEXTS; i++) {
        int32_t *ids = NULL, pos[64], seg[64];
        int n = 0;
        assert_int_equal(r1_rm_encode(tok, tmpl, prompts[i], responses[i], 256, 64, &ids, &n), 0);
        for (int t = 0; t < n; t++)
            pos[t] = t, seg[t] = 0;
        int32_t last = n - 1;
        struct r1_batch b = {1, n, ids, pos, seg, NULL};
        assert_int_equal(r1_model_score_forward(m, &b, &last, &one[i]), 0);
        free(ids);
    }
    /* the scorer: 10 texts in micro-batches of 8 and 2, right-padded */
    struct r1_rm_scorer *sc = NULL;
    float s1[N_TEXTS], s2[N_TEXTS];
    assert_int_equal(r1_rm_scorer_create(&sc, m, tok, tmpl, 64), 0);
    assert_int_equal(r1_rm_scorer_score(sc, N_TEXTS, prompts, responses, s1), 0);
    /* Tolerance 1e-5: the same sums per row, but GEMMs over a different number of rows
     * may block the reduction differently (f32 rounding on scores of magnitude ~1). */
    for (int i = 0; i < N_TEXTS; i++)
        if (!(fabsf(s1[i] - one[i]) <= 1e-5f))
            fail_msg("text %d: scorer %g, single forward %g", i, s1[i], one[i]);
    assert_int_equal(r1_rm_scorer_score(sc, N_TEXTS, prompts, responses, s2), 0);
    assert_memory_equal(s1, s2, sizeof(s1)); /* deterministic */
    r1_rm_scorer_free(sc);

    /* the trainer's held-out numbers come from the same scores: 5 pairs (text i chosen,
     * text i+3 rejected) */
    const char *ev = write_pairs("eval.jsonl", 5);
    char evcopy[256];
    snprintf(evcopy, sizeof(evcopy), "%s", ev);
    struct r1_rm_config c = base_config(evcopy, evcopy);
    struct r1_rm_stage *st = NULL;
    assert_int_equal(r1_rm_stage_create(&st, m, tok, &c), 0);
    double acc, loss, margin;
    int64_t n_pairs;
    assert_int_equal(r1_rm_stage_evaluate(st, &acc, &loss, &margin, &n_pairs), 0);
    assert_int_equal(n_pairs, 5);
    float rc[5], rr[5];
    const char *rp[5], *rj[5];
    for (int i = 0; i < 5; i++)
        rp[i] = prompts[i], rj[i] = responses[(i + 3) % N_TEXTS];
    assert_int_equal(r1_rm_scorer_create(&sc, m, tok, tmpl, 64), 0);
    assert_int_equal(r1_rm_scorer_score(sc, 5, rp, rj, rr), 0); /* rejected texts */
    r1_rm_scorer_free(sc);
    double want_acc = 0, want_margin = 0;
    for (int i = 0; i < 5; i++) {
        rc[i] = one[i];
        want_acc += rc[i] > rr[i];
        want_margin += (double)rc[i] - rr[i];
    }
    double want_loss = r1_rm_bt_loss(5, rc, rr, 0.0f, 5.0, NULL, NULL);
    assert_true(fabs(acc - want_acc / 5) < 1e-12);
    assert_true(fabs(margin - want_margin / 5) < 1e-5);
    assert_true(fabs(loss - want_loss) < 1e-5);
    r1_rm_stage_free(st);

    /* after an HF-dir save and load the scorer gives the same scores */
    char sub[300];
    snprintf(sub, sizeof(sub), "%s/rm-dir", dir);
    assert_int_equal(r1_hfdir_save(m, sub, R1_F32), 0);
    struct r1_model *m2 = NULL;
    assert_int_equal(r1_hfdir_load(&m2, be, sub), 0);
    assert_true(r1_model_has_score_head(m2));
    assert_int_equal(r1_rm_scorer_create(&sc, m2, tok, tmpl, 64), 0);
    assert_int_equal(r1_rm_scorer_score(sc, N_TEXTS, prompts, responses, s2), 0);
    assert_memory_equal(s1, s2, sizeof(s1));
    r1_rm_scorer_free(sc);
    r1_model_free(m2);
    /* refusals: a causal LM, a too long max_len, a bad template */
    struct r1_model_config lc;
    r1_model_config_preset(&lc, "tiny");
    assert_int_equal(r1_model_create(&m2, &lc, be), 0);
    assert_int_equal(r1_rm_scorer_create(&sc, m2, tok, NULL, 64), R1_EINVAL);
    r1_model_free(m2);
    assert_int_equal(r1_rm_scorer_create(&sc, m, tok, NULL, 100000), R1_EINVAL);
    assert_int_equal(r1_rm_scorer_create(&sc, m, tok, "no key", 64), R1_EINVAL);
    r1_model_free(m);
}

/* ---- trainer save/load ------------------------------------------------------------ */

static void test_trainer_resume(void **state)
{
    (void)state;
    const char *p = write_pairs("train.jsonl", 7); /* 7 pairs, batch 4: epochs wrap mid-step */
    char train[256];
    snprintf(train, sizeof(train), "%s", p);
    struct r1_rm_config c = base_config(train, NULL);
    struct r1_model *ma = score_model(30), *mb = score_model(31);
    struct r1_rm_stage *a = NULL, *b = NULL;
    assert_int_equal(r1_rm_stage_create(&a, ma, tok, &c), 0);
    assert_int_equal(r1_rm_stage_create(&b, mb, tok, &c), 0);
    double acc, loss, margin;
    int64_t n;
    assert_int_equal(r1_rm_stage_evaluate(a, &acc, &loss, &margin, &n), 0);
    assert_int_equal(n, 0); /* no held-out pairs */
    struct r1_rm_metrics mt;
    for (int i = 0; i < 3; i++)
        assert_int_equal(r1_rm_stage_step(a, &mt), 0);
    assert_true(isfinite(mt.loss) && mt.loss > 0 && mt.grad_norm > 0);
    assert_true(mt.accuracy >= 0 && mt.accuracy <= 1);
    assert_int_equal(mt.epoch, 1);
    char ck[300];
    snprintf(ck, sizeof(ck), "%s/ck", dir);
    assert_int_equal(mkdir(ck, 0777), 0);
    assert_int_equal(r1_rm_stage_save(a, ck), 0);
    assert_int_equal(r1_rm_stage_load(b, ck), 0);
    assert_int_equal(r1_rm_stage_steps_done(b), 3);
    struct r1_rm_metrics ma_m, mb_m;
    for (int i = 0; i < 3; i++) {
        assert_int_equal(r1_rm_stage_step(a, &ma_m), 0);
        assert_int_equal(r1_rm_stage_step(b, &mb_m), 0);
        assert_memory_equal(&ma_m.loss, &mb_m.loss, sizeof(double));
    }
    assert_memory_equal(ma->param_mem, mb->param_mem, ma->params.cap);
    assert_int_equal(r1_rm_stage_steps_done(a), r1_rm_stage_steps_total(a));
    r1_rm_stage_free(a);
    r1_rm_stage_free(b);
    /* a checkpoint of other data is refused */
    p = write_pairs("other.jsonl", 9);
    snprintf(train, sizeof(train), "%s", p);
    c = base_config(train, NULL);
    assert_int_equal(r1_rm_stage_create(&b, mb, tok, &c), 0);
    assert_int_equal(r1_rm_stage_load(b, ck), R1_EINVAL);
    assert_non_null(strstr(r1_err_last(), "training pairs changed"));
    r1_rm_stage_free(b);
    /* a pairs file with a line missing a field names file and line */
    snprintf(train, sizeof(train), "%s/bad.jsonl", dir);
    FILE *f = fopen(train, "w");
    fputs("{\"q\": \"a\", \"good\": \"b\", \"bad\": \"c\"}\n\n{\"q\": \"a\", \"bad\": \"c\"}\n", f);
    fclose(f);
    c = base_config(train, NULL);
    assert_int_equal(r1_rm_stage_create(&b, mb, tok, &c), R1_EINVAL);
    assert_non_null(strstr(r1_err_last(), "bad.jsonl:3: string field 'good' is missing"));
    r1_model_free(ma);
    r1_model_free(mb);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_bt_loss),         cmocka_unit_test(test_bce_loss),
        cmocka_unit_test(test_auc),             cmocka_unit_test(test_safety_generator),
        cmocka_unit_test(test_encode),
        cmocka_unit_test(test_prefs_generator), cmocka_unit_test(test_scorer_matches_training),
        cmocka_unit_test(test_trainer_resume),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
