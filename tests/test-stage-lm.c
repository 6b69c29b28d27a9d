/* test-stage-lm.c - pretrain and sft stages: loss goes down, accumulation leaves the
 * loss unchanged, and save -> load -> continue is bit-identical to an uninterrupted run. */
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
#include "core/model.h"
#include "core/tokenizer.h"
#include "stages/lm.h"

static struct r1_backend *be;
static struct r1_tokenizer *tok;
static char dir[] = "/tmp/r1-test-lm-XXXXXX";
static char corpus_path[300], pairs_path[300];

static int setup(void **state)
{
    (void)state;
    if (!mkdtemp(dir) || r1_backend_create(&be, R1_BACKEND_CPU, 0) ||
        r1_tokenizer_bytes_create(&tok))
        return -1;
    snprintf(corpus_path, sizeof(corpus_path), "%s/corpus.txt", dir);
    snprintf(pairs_path, sizeof(pairs_path), "%s/pairs.jsonl", dir);
    FILE *f = fopen(corpus_path, "w"), *g = fopen(pairs_path, "w");
    for (int i = 0; i < 60; i++) {
        fprintf(f, "%d+%d=%d\n\n", i % 10, i / 10, i % 10 + i / 10);
        fprintf(g, "{\"prompt\": \"%d+%d=\", \"completion\": \"%d\"}\n", i % 10, i / 10,
                i % 10 + i / 10);
    }
    fclose(f);
    fclose(g);
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

static struct r1_lm_config config(enum r1_corpus_kind kind, int micro)
{
    struct r1_lm_config c;
    memset(&c, 0, sizeof(c));
    c.steps = 40;
    c.batch_size = 4;
    c.micro_batch_size = micro;
    c.seq_len = 24;
    c.seed = 17;
    r1_optim_config_default(&c.optim);
    c.optim.lr = 3e-3f;
    c.data.path = kind == R1_CORPUS_PAIRS ? pairs_path : corpus_path;
    c.data.kind = kind;
    c.data.format = kind == R1_CORPUS_PAIRS ? R1_CORPUS_JSONL : R1_CORPUS_TEXT;
    return c;
}

static struct r1_model *new_model(void)
{
    struct r1_model_config mc;
    r1_model_config_preset(&mc, "tiny");
    struct r1_model *m = NULL;
    assert_int_equal(r1_model_create(&m, &mc, be), 0);
    assert_int_equal(r1_model_init_weights(m, 5), 0);
    return m;
}

static void run_loss_down(enum r1_corpus_kind kind)
{
    struct r1_model *m = new_model();
    struct r1_lm_config c = config(kind, 2);
    struct r1_lm_stage *s = NULL;
    assert_int_equal(r1_lm_stage_create(&s, m, tok, &c), 0);
    struct r1_lm_metrics first, last;
    assert_int_equal(r1_lm_stage_step(s, &first), 0);
    for (int i = 1; i < 40; i++)
        assert_int_equal(r1_lm_stage_step(s, &last), 0);
    /* 40 updates on arithmetic strings: the byte-level loss falls from ~ln(264) = 5.6 to
     * well under 3.5 (measured 1.26 for pretrain and 1.37 for sft; R1_TEST_VERBOSE=1) */
    if (getenv("R1_TEST_VERBOSE"))
        printf("loss %g -> %g\n", first.loss, last.loss);
    if (!(first.loss > 5.0 && last.loss < 3.5))
        fail_msg("loss %g -> %g did not fall as expected", first.loss, last.loss);
    assert_int_equal(last.step, 40);
    r1_lm_stage_free(s);
    r1_model_free(m);
}

static void test_pretrain_loss_down(void **state)
{
    (void)state;
    run_loss_down(R1_CORPUS_DOCUMENTS);
}

static void test_sft_loss_down(void **state)
{
    (void)state;
    run_loss_down(R1_CORPUS_PAIRS);
}

/* Same batch as one micro-batch of 4 or four of 1: same loss up to summation order. */
static void test_accumulation(void **state)
{
    (void)state;
    double loss[2];
    for (int k = 0; k < 2; k++) {
        struct r1_model *m = new_model();
        struct r1_lm_config c = config(R1_CORPUS_PAIRS, k ? 1 : 4);
        struct r1_lm_stage *s = NULL;
        struct r1_lm_metrics mt;
        assert_int_equal(r1_lm_stage_create(&s, m, tok, &c), 0);
        assert_int_equal(r1_lm_stage_step(s, &mt), 0);
        loss[k] = mt.loss;
        r1_lm_stage_free(s);
        r1_model_free(m);
    }
    assert_float_equal(loss[0], loss[1], 1e-5 * loss[0]);
}

static void test_resume_bit_identical(void **state)
{
    (void)state;
    struct r1_lm_config c = config(R1_CORPUS_DOCUMENTS, 2);
    struct r1_model *a = new_model(), *b = new_model();
    struct r1_lm_stage *sa = NULL, *sb = NULL;
    assert_int_equal(r1_lm_stage_create(&sa, a, tok, &c), 0);
    for (int i = 0; i < 12; i++) /* crosses an epoch: 13 windows of 24, 4 rows a step */
        assert_int_equal(r1_lm_stage_step(sa, NULL), 0);

    assert_int_equal(r1_lm_stage_create(&sb, b, tok, &c), 0);
    for (int i = 0; i < 5; i++)
        assert_int_equal(r1_lm_stage_step(sb, NULL), 0);
    char ck[400];
    snprintf(ck, sizeof(ck), "%s/ckpt", dir);
    assert_int_equal(r1_lm_stage_save(sb, ck), 0);
    r1_lm_stage_free(sb);
    r1_model_free(b);

    struct r1_model *r = new_model();
    struct r1_lm_stage *sr = NULL;
    assert_int_equal(r1_lm_stage_create(&sr, r, tok, &c), 0);
    assert_int_equal(r1_lm_stage_load(sr, ck), 0);
    assert_int_equal(r1_lm_stage_steps_done(sr), 5);
    for (int i = 5; i < 12; i++)
        assert_int_equal(r1_lm_stage_step(sr, NULL), 0);
    assert_memory_equal(a->param_mem, r->param_mem, a->params.cap);

    /* changed data is refused on load */
    FILE *f = fopen(corpus_path, "a");
    fputs("9+9=18\n", f);
    fclose(f);
    struct r1_model *x = new_model();
    struct r1_lm_stage *sx = NULL;
    assert_int_equal(r1_lm_stage_create(&sx, x, tok, &c), 0);
    assert_int_equal(r1_lm_stage_load(sx, ck), R1_EINVAL);
    assert_non_null(strstr(r1_err_last(), "data changed"));
    r1_lm_stage_free(sx);
    r1_model_free(x);
    r1_lm_stage_free(sa);
    r1_lm_stage_free(sr);
    r1_model_free(a);
    r1_model_free(r);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_pretrain_loss_down),
        cmocka_unit_test(test_sft_loss_down),
        cmocka_unit_test(test_accumulation),
        cmocka_unit_test(test_resume_bit_identical),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
