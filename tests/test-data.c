/* test-data.c - corpora: parsing, packing into windows, pairs, resumable order, errors. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cmocka.h>

#include "core/err.h"
#include "core/tokenizer.h"
#include "stages/data/corpus.h"

static struct r1_tokenizer *tok;
static char dir[] = "/tmp/r1-test-data-XXXXXX";

static int setup(void **state)
{
    (void)state;
    return (mkdtemp(dir) && !r1_tokenizer_bytes_create(&tok)) ? 0 : -1;
}

static int teardown(void **state)
{
    (void)state;
    char cmd[128];
    snprintf(cmd, sizeof(cmd), "rm -rf %s", dir);
    r1_tokenizer_free(tok);
    return system(cmd);
}

static const char *write_tmp(const char *name, const char *text)
{
    static char path[256];
    snprintf(path, sizeof(path), "%s/%s", dir, name);
    FILE *f = fopen(path, "w");
    fputs(text, f);
    fclose(f);
    return path;
}

static void test_text_documents_and_windows(void **state)
{
    (void)state;
    /* three documents: "ab", "c\nd" (inner newline kept), "ef" */
    struct r1_corpus_spec sp = {write_tmp("t.txt", "ab\n\n\nc\nd\n  \nef\n"), R1_CORPUS_DOCUMENTS,
                                R1_CORPUS_TEXT, NULL, NULL, NULL, NULL, 0, 0};
    struct r1_corpus *c = NULL;
    assert_int_equal(r1_corpus_load(&c, &sp, tok), 0);
    assert_int_equal(c->n_examples, 3);
    /* a b EOS c \n d EOS e f EOS */
    const int32_t want[] = {'a', 'b', 256, 'c', '\n', 'd', 256, 'e', 'f', 256};
    assert_int_equal(c->n_tokens, 10);
    assert_memory_equal(c->tokens, want, sizeof(want));
    assert_int_equal(strlen(c->sha256), 64);

    /* T = 4: windows [0..4], [4..8] -> 2 rows */
    assert_int_equal(r1_corpus_rows(c, 4), 2);
    struct r1_sampler s;
    assert_int_equal(r1_sampler_init(&s, c, 4, 1), 0);
    int32_t tk[8], ps[8], sg[8], tg[8];
    float w[8];
    int64_t scored = r1_sampler_next(&s, 2, tk, ps, sg, tg, w);
    /* find the row that starts at token 0 */
    int r0 = tk[0] == 'a' ? 0 : 1;
    const int32_t *t0 = tk + 4 * r0, *p0 = ps + 4 * r0, *s0 = sg + 4 * r0, *g0 = tg + 4 * r0;
    /* a b EOS | c: positions restart, segment changes, EOS's target (c) is masked */
    const int32_t wt[4] = {'a', 'b', 256, 'c'}, wp[4] = {0, 1, 2, 0}, ws[4] = {0, 0, 0, 1};
    const int32_t wg[4] = {'b', 256, -1, '\n'};
    assert_memory_equal(t0, wt, sizeof(wt));
    assert_memory_equal(p0, wp, sizeof(wp));
    assert_memory_equal(s0, ws, sizeof(ws));
    assert_memory_equal(g0, wg, sizeof(wg));
    assert_int_equal(scored, 6); /* 8 targets, one masked per window */
    r1_sampler_release(&s);
    r1_corpus_free(c);
}

static void test_pairs(void **state)
{
    (void)state;
    struct r1_corpus_spec sp = {
        write_tmp("p.jsonl", "{\"q\": \"1+1=\", \"a\": \"2\"}\n\n{\"q\": \"long prompt here\", \"a\": \"x\"}\n"),
        R1_CORPUS_PAIRS, R1_CORPUS_JSONL, NULL, "q", "a", NULL, 0, 0};
    struct r1_corpus *c = NULL;
    assert_int_equal(r1_corpus_load(&c, &sp, tok), 0);
    assert_int_equal(c->n_examples, 2);
    assert_int_equal(c->prompt_len[0], 4);
    struct r1_sampler s;
    assert_int_equal(r1_sampler_init(&s, c, 8, 3), 0);
    assert_int_equal(r1_sampler_seek(&s, 0, 0), 0);
    int32_t tk[16], ps[16], sg[16], tg[16];
    float w[16];
    r1_sampler_next(&s, 2, tk, ps, sg, tg, w);
    int r = tk[0] == '1' ? 0 : 1;
    /* "1+1=" "2" EOS: inputs 1 + 1 = 2, targets only on "2" (at the '=') and EOS */
    const int32_t wg[8] = {-1, -1, -1, '2', 256, -1, -1, -1};
    const int32_t wsg[8] = {0, 0, 0, 0, 0, -1, -1, -1};
    assert_memory_equal(tg + 8 * r, wg, sizeof(wg));
    assert_memory_equal(sg + 8 * r, wsg, sizeof(wsg));
    assert_true(w[8 * r + 3] == 1.0f && w[8 * r + 2] == 0.0f);
    /* the long prompt (16 tokens) is truncated to T: nothing of it is scored */
    for (int t = 0; t < 8; t++)
        assert_int_equal(tg[8 * (1 - r) + t], -1);
    r1_sampler_release(&s);
    r1_corpus_free(c);
}

/* The order is a function of (seed, epoch): seeking to a saved (epoch, cursor) continues
 * exactly as an uninterrupted sampler does, across an epoch boundary. */
static void test_resume_order(void **state)
{
    (void)state;
    char text[4096] = "";
    for (int i = 0; i < 40; i++) {
        char line[64];
        snprintf(line, sizeof(line), "document number %d\n\n", i);
        strcat(text, line);
    }
    struct r1_corpus_spec sp = {write_tmp("r.txt", text), R1_CORPUS_DOCUMENTS, R1_CORPUS_TEXT,
                                NULL, NULL, NULL, NULL, 0, 0};
    struct r1_corpus *c = NULL;
    assert_int_equal(r1_corpus_load(&c, &sp, tok), 0);
    enum { T = 16, B = 3 };
    struct r1_sampler a, b;
    assert_int_equal(r1_sampler_init(&a, c, T, 9), 0);
    assert_int_equal(r1_sampler_init(&b, c, T, 9), 0);
    int32_t ta[B * T], tb[B * T], x[B * T], y[B * T], z[B * T];
    float w[B * T];
    int steps = (int)(2 * a.n_rows / B) + 3; /* crosses two epoch boundaries */
    for (int i = 0; i < steps / 2; i++) {
        r1_sampler_next(&a, B, ta, x, y, z, w);
        r1_sampler_next(&b, B, tb, x, y, z, w);
    }
    int64_t ep = b.epoch, cur = b.cursor;
    r1_sampler_release(&b);
    assert_int_equal(r1_sampler_init(&b, c, T, 9), 0);
    assert_int_equal(r1_sampler_seek(&b, ep, cur), 0);
    for (int i = steps / 2; i < steps; i++) {
        r1_sampler_next(&a, B, ta, x, y, z, w);
        r1_sampler_next(&b, B, tb, x, y, z, w);
        assert_memory_equal(ta, tb, sizeof(ta));
    }
    assert_true(a.epoch >= 2);
    /* a different seed gives a different order */
    struct r1_sampler d;
    assert_int_equal(r1_sampler_init(&d, c, T, 10), 0);
    assert_true(memcmp(a.order, d.order, sizeof(int64_t) * (size_t)a.n_rows) != 0 ||
                a.epoch != d.epoch);
    assert_int_equal(r1_sampler_seek(&d, 0, d.n_rows + 1), R1_EINVAL);
    r1_sampler_release(&a);
    r1_sampler_release(&b);
    r1_sampler_release(&d);
    r1_corpus_free(c);
}

static void test_errors(void **state)
{
    (void)state;
    struct r1_corpus *c = NULL;
    struct r1_corpus_spec sp = {write_tmp("bad.jsonl", "{\"text\": \"ok\"}\n{\"text\": 5}\n"),
                                R1_CORPUS_DOCUMENTS, R1_CORPUS_JSONL, NULL, NULL, NULL, NULL, 0, 0};
    assert_int_equal(r1_corpus_load(&c, &sp, tok), R1_EINVAL);
    assert_non_null(strstr(r1_err_last(), "bad.jsonl:2:"));
    sp.path = write_tmp("bad2.jsonl", "{\"text\": \"ok\"}\nnot json\n");
    assert_int_equal(r1_corpus_load(&c, &sp, tok), R1_EINVAL);
    assert_non_null(strstr(r1_err_last(), "bad2.jsonl:2:"));
    sp.path = write_tmp("empty.txt", "\n\n   \n");
    sp.format = R1_CORPUS_TEXT;
    assert_int_equal(r1_corpus_load(&c, &sp, tok), R1_EINVAL);
    assert_non_null(strstr(r1_err_last(), "no examples"));
    sp.kind = R1_CORPUS_PAIRS;
    assert_int_equal(r1_corpus_load(&c, &sp, tok), R1_EINVAL);
    sp.path = "/nonexistent/data.txt";
    sp.kind = R1_CORPUS_DOCUMENTS;
    assert_int_equal(r1_corpus_load(&c, &sp, tok), R1_EINVAL);
    assert_non_null(strstr(r1_err_last(), "/nonexistent/data.txt"));
    /* too short for the window */
    sp.path = write_tmp("short.txt", "ab\n");
    assert_int_equal(r1_corpus_load(&c, &sp, tok), 0);
    struct r1_sampler s;
    assert_int_equal(r1_sampler_init(&s, c, 8, 1), R1_EINVAL);
    r1_corpus_free(c);
}

/* A pretraining corpus straight from a generator: its demo texts, deterministic. */
static void test_generated_documents(void **state)
{
    (void)state;
    struct r1_corpus_spec sp = {"arith", R1_CORPUS_DOCUMENTS, R1_CORPUS_JSONL, "text", NULL, NULL,
                                "arith:digits=1,demo=1", 50, 9};
    struct r1_corpus *a = NULL, *b = NULL;
    assert_int_equal(r1_corpus_load(&a, &sp, tok), 0);
    assert_int_equal(r1_corpus_load(&b, &sp, tok), 0);
    assert_int_equal(a->n_examples, 50);
    assert_string_equal(a->sha256, b->sha256);
    assert_int_equal(a->n_tokens, b->n_tokens);
    assert_memory_equal(a->tokens, b->tokens, (size_t)a->n_tokens * sizeof(int32_t));
    /* every document is a worked example: it holds the think and answer tags */
    assert_true(r1_tokenizer_lookup(tok, "<think>") >= 0);
    int32_t think = r1_tokenizer_lookup(tok, "<think>");
    int64_t n_think = 0;
    for (int64_t i = 0; i < a->n_tokens; i++)
        n_think += a->tokens[i] == think;
    assert_int_equal(n_think, 50);
    r1_corpus_free(a);
    r1_corpus_free(b);
    sp.generator = "arith:digits=99";
    assert_int_equal(r1_corpus_load(&a, &sp, tok), R1_EINVAL);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_text_documents_and_windows),
        cmocka_unit_test(test_pairs),
        cmocka_unit_test(test_resume_order),
        cmocka_unit_test(test_errors),
        cmocka_unit_test(test_generated_documents),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
