/* test-judge.c - the generative judge (stages/judge.h) and its prompt: the template fills
 * every {question}, {reference}, {prediction} (and refuses one without {prediction}); the
 * verdict is σ(z_yes - z_no) of the judge's logits at the prompt's last token, bit for bit
 * what r1_model_logits gives for the same tokens; verdict words whose first tokens agree,
 * or a reward model, are refused; a prompt longer than max_len keeps its end; repeats come
 * from the cache (hits counted), also across micro-batch boundaries; the judge generator's
 * verdicts match its predictions. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "core/backend.h"
#include "core/err.h"
#include "core/model.h"
#include "core/tokenizer.h"
#include "stages/data/gen.h"
#include "stages/data/prompts.h"
#include "stages/judge.h"

static struct r1_backend *be;
static struct r1_tokenizer *tok;
static struct r1_model *m;

static int setup(void **state)
{
    (void)state;
    struct r1_model_config c;
    if (r1_backend_create(&be, R1_BACKEND_CPU, 1) || r1_tokenizer_bytes_create(&tok) ||
        r1_model_config_preset(&c, "tiny") || r1_model_create(&m, &c, be) ||
        r1_model_init_weights(m, 3))
        return -1;
    return 0;
}

static int teardown(void **state)
{
    (void)state;
    r1_model_free(m);
    r1_tokenizer_free(tok);
    r1_backend_free(be);
    return 0;
}

static void test_prompt(void **state)
{
    (void)state;
    char *t = r1_judge_prompt("Q={question} R={reference} P={prediction} Q2={question}", "a?",
                              "1", "2");
    assert_string_equal(t, "Q=a? R=1 P=2 Q2=a?");
    free(t);
    t = r1_judge_prompt(NULL, "What is 1+1?", "2", "3");
    assert_string_equal(t, "Question: What is 1+1?\nReference answer: 2\nPrediction: 3\n"
                           "Is the prediction correct? Verdict: ");
    free(t);
    assert_null(r1_judge_prompt("no prediction {question}", "a", "b", "c"));
    assert_int_equal(r1_err_code(), R1_EINVAL);
    assert_non_null(strstr(r1_err_last(), "{prediction}"));
}

/* P(yes) of one text computed directly: the logits of its last token */
static float direct(const char *text)
{
    int32_t *ids = NULL;
    int n = 0;
    assert_int_equal(r1_tokenizer_encode(tok, text, strlen(text), &ids, &n), 0);
    int32_t *pos = malloc((size_t)n * sizeof(int32_t)), *seg = calloc((size_t)n, sizeof(int32_t));
    for (int t = 0; t < n; t++)
        pos[t] = t;
    float *lg = malloc((size_t)m->cfg.vocab_size * sizeof(float));
    struct r1_batch b = {1, n, ids, pos, seg, NULL};
    int32_t row = n - 1;
    assert_int_equal(r1_model_logits(m, &b, &row, 1, lg), 0);
    double d = (double)lg['y'] - (double)lg['n']; /* byte tokens */
    float p = (float)(d >= 0 ? 1.0 / (1.0 + exp(-d)) : exp(d) / (1.0 + exp(d)));
    free(ids);
    free(pos);
    free(seg);
    free(lg);
    return p;
}

static void test_verdicts(void **state)
{
    (void)state;
    struct r1_judge *j = NULL;
    assert_int_equal(r1_judge_create(&j, m, tok, NULL, "yes", "yup", 0), R1_EINVAL);
    assert_non_null(strstr(r1_err_last(), "same token"));
    assert_int_equal(r1_judge_create(&j, m, tok, "{question}", NULL, NULL, 0), R1_EINVAL);
    assert_int_equal(r1_judge_create(&j, m, tok, NULL, NULL, NULL, 1), R1_EINVAL);
    assert_int_equal(r1_judge_create(&j, m, tok, NULL, NULL, NULL, 0), 0);
    enum { N = 11 }; /* more than one micro-batch, with repeats inside and across */
    const char *q[N], *r[N], *p[N];
    char qb[N][32], pb[N][8];
    for (int i = 0; i < N; i++) {
        snprintf(qb[i], sizeof(qb[i]), "What is %d+%d?", i % 6, 2);
        snprintf(pb[i], sizeof(pb[i]), "%d", (i % 6) + 2 + (i % 2));
        q[i] = qb[i];
        r[i] = "x";
        p[i] = pb[i];
    }
    float py[N], again[N];
    assert_int_equal(r1_judge_score(j, N, q, r, p, py), 0);
    int64_t hits, misses;
    r1_judge_stats(j, &hits, &misses);
    assert_int_equal(hits + misses, N); /* every item answered once, computed or cached */
    for (int i = 0; i < N; i++) {
        char *text = r1_judge_prompt(NULL, q[i], r[i], p[i]);
        float d = direct(text);
        free(text);
        assert_true(py[i] > 0.0f && py[i] < 1.0f);
        /* the batch's padding and neighbours change nothing but the BLAS's rounding: its
         * blocking depends on the row count on some CPUs (OpenBLAS 0.3.21 on AMD EPYC
         * differs from one row's result in the last bit) */
        assert_true(fabsf(py[i] - d) <= 1e-6f);
    }
    assert_int_equal(r1_judge_score(j, N, q, r, p, again), 0);
    assert_memory_equal(py, again, sizeof(py));
    int64_t hits2, misses2;
    r1_judge_stats(j, &hits2, &misses2);
    assert_int_equal(hits2 - hits, N); /* the repeat: all from the cache */
    assert_int_equal(misses2, misses);
    r1_judge_free(j);
    /* a long prompt keeps its end: with max_len 16 the verdict is that of the last 16
     * bytes of the prompt */
    assert_int_equal(r1_judge_create(&j, m, tok, NULL, NULL, NULL, 16), 0);
    float pl;
    const char *lq = "What is the sum of all the numbers from one to ten?";
    assert_int_equal(r1_judge_score(j, 1, &lq, r, p, &pl), 0);
    char *text = r1_judge_prompt(NULL, lq, r[0], p[0]);
    float d = direct(text + strlen(text) - 16);
    free(text);
    assert_memory_equal(&pl, &d, sizeof(float));
    r1_judge_free(j);
}

static void test_refuses_score_model(void **state)
{
    (void)state;
    struct r1_model_config c;
    struct r1_model *rm = NULL;
    struct r1_judge *j = NULL;
    assert_int_equal(r1_model_config_preset(&c, "tiny"), 0);
    c.num_labels = 1;
    assert_int_equal(r1_model_create(&rm, &c, be), 0);
    assert_int_equal(r1_judge_create(&j, rm, tok, NULL, NULL, NULL, 0), R1_EINVAL);
    assert_non_null(strstr(r1_err_last(), "score head"));
    r1_model_free(rm);
}

/* The judge generator: the verdict is "yes" exactly when the prediction is the reference,
 * its prompt is the default judge prompt of the three fields, wrong predictions are
 * near misses, both verdicts occur, and examples repeat by seed. */
static void test_judge_generator(void **state)
{
    (void)state;
    struct r1_datagen *g = NULL;
    assert_int_equal(r1_datagen_parse(&g, "judge:digits=1-2,wrong=0.5"), 0);
    int yes = 0;
    for (int i = 0; i < 200; i++) {
        json_t *a = NULL, *b = NULL;
        assert_int_equal(r1_datagen_example(g, 2, R1_SPLIT_TRAIN, i, &a), 0);
        assert_int_equal(r1_datagen_example(g, 2, R1_SPLIT_TRAIN, i, &b), 0);
        assert_true(json_equal(a, b));
        const char *q = json_string_value(json_object_get(a, "question"));
        const char *ref = json_string_value(json_object_get(a, "reference"));
        const char *pred = json_string_value(json_object_get(a, "prediction"));
        const char *v = json_string_value(json_object_get(a, "verdict"));
        assert_string_equal(json_string_value(json_object_get(a, "completion")), v);
        int right = strcmp(ref, pred) == 0;
        assert_string_equal(v, right ? "yes" : "no");
        yes += right;
        if (!right) {
            long d = labs(atol(ref) - atol(pred));
            assert_true(d == 1 || d == 2 || d == 10);
        }
        char *t = r1_judge_prompt(NULL, q, ref, pred);
        assert_string_equal(json_string_value(json_object_get(a, "prompt")), t);
        free(t);
        json_decref(a);
        json_decref(b);
    }
    assert_true(yes > 60 && yes < 140);
    r1_datagen_free(g);
    assert_int_equal(r1_datagen_parse(&g, "judge:unsafe=0.1"), R1_EINVAL);
    assert_non_null(strstr(r1_err_last(), "judge: unknown knob"));
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_prompt),
        cmocka_unit_test(test_judge_generator),
        cmocka_unit_test(test_verdicts),
        cmocka_unit_test(test_refuses_score_model),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
