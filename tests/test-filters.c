/* test-filters.c - the rejection-sampling filters (stages/data/filters.h): every reason
 * on its own, the order in which they are checked (a sample failing several gets the
 * first), the names metrics use, trigram similarity values worked out by hand, and the
 * mix file (stages/data/mix.h). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <math.h>
#include <stdio.h>
#include <string.h>
#include <stdlib.h>
#include <unistd.h>

#include <cmocka.h>

#include "core/err.h"
#include "stages/data/filters.h"
#include "stages/data/mix.h"

#define GOOD "<think>\nthree plus four is 7\n</think>\n<answer>\n7\n</answer>"

/* Everything on and permissive: a GOOD completion with reward 1 passes. */
static struct r1_filter_cfg cfg_all(void)
{
    return (struct r1_filter_cfg){.min_reward = 1.0f,
                                  .require_format = true,
                                  .language = "en",
                                  .min_language = 0.5f,
                                  .min_tokens = 5,
                                  .max_tokens = 100,
                                  .no_code_blocks = true,
                                  .max_paragraph_chars = 60,
                                  .dedup_threshold = 0.9f,
                                  .keep_per_prompt = 2};
}

static struct r1_filter_sample sample(const char *text, double reward)
{
    return (struct r1_filter_sample){"What is 3+4?", text, (int)strlen(text), false, reward};
}

static enum r1_reject check(const struct r1_filter_cfg *c, const struct r1_filter_sample *s)
{
    return r1_filter_check(c, s, NULL);
}

static void test_names(void **state)
{
    (void)state;
    static const char *const want[R1_REJECT_N] = {
        "kept",     "truncated",  "too_short", "too_long",  "format", "reward",
        "language", "code_block", "paragraph", "duplicate", "quota"};
    for (int r = 0; r < R1_REJECT_N; r++)
        assert_string_equal(r1_reject_name((enum r1_reject)r), want[r]);
    assert_string_equal(r1_reject_name(R1_REJECT_N), "unknown");
}

static void test_kept(void **state)
{
    (void)state;
    struct r1_filter_cfg c = cfg_all();
    struct r1_filter_sample s = sample(GOOD, 1.0);
    assert_int_equal(check(&c, &s), R1_REJECT_NONE);
}

static void test_truncated(void **state)
{
    (void)state;
    struct r1_filter_cfg c = cfg_all();
    struct r1_filter_sample s = sample(GOOD, 1.0);
    s.truncated = true;
    assert_int_equal(check(&c, &s), R1_REJECT_TRUNCATED);
    /* no setting turns it off */
    struct r1_filter_cfg off = {.min_reward = -1e9f, .keep_per_prompt = 1};
    assert_int_equal(check(&off, &s), R1_REJECT_TRUNCATED);
}

static void test_lengths(void **state)
{
    (void)state;
    struct r1_filter_cfg c = cfg_all();
    struct r1_filter_sample s = sample(GOOD, 1.0);
    s.n_tokens = 4;
    assert_int_equal(check(&c, &s), R1_REJECT_TOO_SHORT);
    s.n_tokens = 5; /* bounds are inclusive */
    assert_int_equal(check(&c, &s), R1_REJECT_NONE);
    s.n_tokens = 100;
    assert_int_equal(check(&c, &s), R1_REJECT_NONE);
    s.n_tokens = 101;
    assert_int_equal(check(&c, &s), R1_REJECT_TOO_LONG);
    c.max_tokens = 0; /* no bound */
    s.n_tokens = 1 << 30;
    assert_int_equal(check(&c, &s), R1_REJECT_NONE);
}

static void test_format(void **state)
{
    (void)state;
    struct r1_filter_cfg c = cfg_all();
    c.min_language = 0; /* the texts below have no words */
    struct r1_filter_sample s = sample("7 because three plus four is seven and that is it", 1.0);
    assert_int_equal(check(&c, &s), R1_REJECT_FORMAT);
    s.completion = "<think>3+4 = 7</think><answer>7</answer>"; /* soft layout only */
    assert_int_equal(check(&c, &s), R1_REJECT_FORMAT);
    c.require_format = false;
    assert_int_equal(check(&c, &s), R1_REJECT_NONE);
    /* a template that pre-fills "<think>\n": the completion continues it */
    c.require_format = true;
    s.prompt = "What is 3+4? <think>\n";
    s.completion = "3+4 = 7\n</think>\n<answer>\n7\n</answer>";
    assert_int_equal(check(&c, &s), R1_REJECT_NONE);
}

static void test_reward(void **state)
{
    (void)state;
    struct r1_filter_cfg c = cfg_all();
    struct r1_filter_sample s = sample(GOOD, 0.999);
    assert_int_equal(check(&c, &s), R1_REJECT_REWARD);
    s.reward = 1.0; /* at least min_reward */
    assert_int_equal(check(&c, &s), R1_REJECT_NONE);
    s.reward = NAN;
    assert_int_equal(check(&c, &s), R1_REJECT_REWARD);
    c.min_reward = -0.5f;
    s.reward = -0.5;
    assert_int_equal(check(&c, &s), R1_REJECT_NONE);
}

static void test_language(void **state)
{
    (void)state;
    /* words: "ok" "this" "is" "fine" + two Han characters (each a word): 4 of 6 Latin */
    const char *mixed = "<think>\nok this is fine \xe4\xb8\xad\xe6\x96\x87\n</think>\n<answer>\n7\n</answer>";
    assert_true(fabs(r1_filter_language_share(mixed, "en") - 4.0 / 6.0) < 1e-12);
    assert_true(fabs(r1_filter_language_share(mixed, "zh") - 2.0 / 6.0) < 1e-12);
    /* the answer and text outside the tags count; the tags do not */
    assert_true(fabs(r1_filter_language_share("<answer>\n\xe4\xb8\xad\n</answer> yes", "en") -
                     0.5) < 1e-12);
    assert_true(r1_filter_language_share("<think></think>", "en") == 0.0);
    assert_true(r1_filter_language_share("", "en") == 0.0);
    assert_true(r1_filter_language_share("hello", "xx") == 0.0);
    assert_true(r1_filter_language_share("hello world", "en") == 1.0);

    struct r1_filter_cfg c = cfg_all();
    c.min_language = 0.7f;
    struct r1_filter_sample s = sample(mixed, 1.0);
    assert_int_equal(check(&c, &s), R1_REJECT_LANGUAGE);
    c.min_language = 0.6f;
    assert_int_equal(check(&c, &s), R1_REJECT_NONE);
    c.min_language = 0; /* off */
    c.language = "zh";
    assert_int_equal(check(&c, &s), R1_REJECT_NONE);
}

static void test_code_block(void **state)
{
    (void)state;
    const char *code = "<think>\nrun ```x = 3 + 4```\n</think>\n<answer>\n7\n</answer>";
    assert_true(r1_filter_has_code_block(code));
    assert_false(r1_filter_has_code_block("`` ` inline `code`"));
    struct r1_filter_cfg c = cfg_all();
    struct r1_filter_sample s = sample(code, 1.0);
    assert_int_equal(check(&c, &s), R1_REJECT_CODE_BLOCK);
    c.no_code_blocks = false;
    assert_int_equal(check(&c, &s), R1_REJECT_NONE);
}

static void test_paragraph(void **state)
{
    (void)state;
    assert_int_equal(r1_filter_longest_paragraph(""), 0);
    assert_int_equal(r1_filter_longest_paragraph("\n \n\t\n"), 0);
    assert_int_equal(r1_filter_longest_paragraph("abc"), 3);
    /* inner newlines count, outer whitespace does not */
    assert_int_equal(r1_filter_longest_paragraph("  ab\ncd  \n\nx"), 5);
    /* a line of spaces separates; \r\n endings */
    assert_int_equal(r1_filter_longest_paragraph("abcd\r\n  \r\nabcdef\r\n"), 6);
    /* characters, not bytes: two 3-byte Han characters and one 2-byte é */
    assert_int_equal(r1_filter_longest_paragraph("\xe4\xb8\xad\xe6\x96\x87\xc3\xa9"), 3);
    assert_int_equal(r1_filter_longest_paragraph(GOOD), (int64_t)strlen(GOOD));

    char text[256];
    snprintf(text, sizeof(text), "<think>\n%s\n\nshort\n</think>\n<answer>\n7\n</answer>",
             "one long paragraph of reasoning that goes on and on past sixty characters");
    struct r1_filter_cfg c = cfg_all();
    c.max_paragraph_chars = 80;
    c.max_tokens = 0;
    struct r1_filter_sample s = sample(text, 1.0);
    assert_int_equal(check(&c, &s), R1_REJECT_PARAGRAPH); /* 7 + 1 + 73 = 81 chars */
    c.max_paragraph_chars = 81;
    assert_int_equal(check(&c, &s), R1_REJECT_NONE);
    c.max_paragraph_chars = 0; /* off */
    assert_int_equal(check(&c, &s), R1_REJECT_NONE);
}

static void test_similarity(void **state)
{
    (void)state;
    /* {a b c, b c d} vs {a b c, b c e}: 1 shared of 3 */
    assert_true(fabs(r1_filter_similarity("a b c d", "a b c e") - 1.0 / 3.0) < 1e-12);
    /* whitespace of any kind separates words */
    assert_true(r1_filter_similarity("a b\nc\td", " a  b c d ") == 1.0);
    /* {a b c, b c d, c d e} vs {a b c, b c d}: 2 of 3 */
    assert_true(fabs(r1_filter_similarity("a b c d e", "a b c d") - 2.0 / 3.0) < 1e-12);
    /* repeated trigrams count once: {x x x} vs {x x x, x x y} = 1/2 */
    assert_true(fabs(r1_filter_similarity("x x x x x", "x x x x y") - 0.5) < 1e-12);
    /* nothing shared */
    assert_true(r1_filter_similarity("a b c", "d e f") == 0.0);
    /* word order matters: {a b c} vs {c b a} */
    assert_true(r1_filter_similarity("a b c", "c b a") == 0.0);
    /* short texts are one shingle */
    assert_true(r1_filter_similarity("7", "7") == 1.0);
    assert_true(r1_filter_similarity("a b", "a b") == 1.0);
    assert_true(r1_filter_similarity("a b", "a c") == 0.0);
    assert_true(r1_filter_similarity("a b", "a b c") == 0.0);
    assert_true(r1_filter_similarity("", "  ") == 1.0);
    assert_true(r1_filter_similarity("", "a") == 0.0);
    assert_true(r1_filter_similarity(NULL, "") == 1.0);
    /* symmetric; 10 words differing in the last: 7 shared of 9 */
    const char *p = "w1 w2 w3 w4 w5 w6 w7 w8 w9 w10", *q = "w1 w2 w3 w4 w5 w6 w7 w8 w9 zz";
    assert_true(fabs(r1_filter_similarity(p, q) - 7.0 / 9.0) < 1e-12);
    assert_true(r1_filter_similarity(p, q) == r1_filter_similarity(q, p));
}

static void test_duplicate(void **state)
{
    (void)state;
    struct r1_filter_cfg c = cfg_all();
    const char *t1 = "<think>\nw1 w2 w3 w4 w5 w6 w7 w8 w9 w10\n</think>\n<answer>\n7\n</answer>";
    const char *t2 = "<think>\nw1 w2 w3 w4 w5 w6 w7 w8 w9 zz\n</think>\n<answer>\n7\n</answer>";
    /* as words: "<think>" w1..w9 w10|zz "</think>" "<answer>" 7 "</answer>" = 15 words,
     * 13 trigrams each, 10 shared (3 touch the changed word): 10 / 16 */
    double sim = r1_filter_similarity(t1, t2);
    assert_true(fabs(sim - 10.0 / 16.0) < 1e-12);
    const char *kept_texts[] = {t1};
    struct r1_filter_kept kept = {kept_texts, 1};
    c.max_paragraph_chars = 0;
    struct r1_filter_sample s = sample(t2, 1.0);
    c.dedup_threshold = 0.6f;
    assert_int_equal(r1_filter_check(&c, &s, &kept), R1_REJECT_DUPLICATE);
    c.dedup_threshold = 0.7f;
    assert_int_equal(r1_filter_check(&c, &s, &kept), R1_REJECT_NONE);
    /* exact copies always, even with near-duplicate detection off */
    c.dedup_threshold = 0;
    s.completion = t1;
    assert_int_equal(r1_filter_check(&c, &s, &kept), R1_REJECT_DUPLICATE);
    s.completion = t2;
    assert_int_equal(r1_filter_check(&c, &s, &kept), R1_REJECT_NONE);
}

static void test_quota(void **state)
{
    (void)state;
    struct r1_filter_cfg c = cfg_all();
    const char *a = "<think>\nthree plus four\n</think>\n<answer>\n7\n</answer>";
    const char *b = "<think>\nfour plus three\n</think>\n<answer>\n7\n</answer>";
    const char *kept_texts[] = {a, b};
    struct r1_filter_kept kept = {kept_texts, 1};
    struct r1_filter_sample s = sample(GOOD, 1.0);
    assert_int_equal(r1_filter_check(&c, &s, &kept), R1_REJECT_NONE); /* 1 of 2 kept */
    kept.n = 2;
    assert_int_equal(r1_filter_check(&c, &s, &kept), R1_REJECT_QUOTA);
    c.keep_per_prompt = 3;
    assert_int_equal(r1_filter_check(&c, &s, &kept), R1_REJECT_NONE);
}

/* A sample failing every check gets the first reason; fixing reasons one at a time,
 * in order, walks down the list. */
static void test_order(void **state)
{
    (void)state;
    struct r1_filter_cfg c = cfg_all();
    c.max_paragraph_chars = 10;
    c.keep_per_prompt = 1;
    c.min_language = 0.9f;
    const char *bad = "```\xe4\xb8\xad\xe6\x96\x87 long paragraph``` 7"; /* no format */
    const char *kept_texts[] = {bad};
    struct r1_filter_kept kept = {kept_texts, 1};
    struct r1_filter_sample s = {"q", bad, 200, true, 0.0};
    assert_int_equal(r1_filter_check(&c, &s, &kept), R1_REJECT_TRUNCATED);
    s.truncated = false;
    s.n_tokens = 1;
    assert_int_equal(r1_filter_check(&c, &s, &kept), R1_REJECT_TOO_SHORT);
    s.n_tokens = 200;
    assert_int_equal(r1_filter_check(&c, &s, &kept), R1_REJECT_TOO_LONG);
    s.n_tokens = 50;
    assert_int_equal(r1_filter_check(&c, &s, &kept), R1_REJECT_FORMAT);
    c.require_format = false;
    assert_int_equal(r1_filter_check(&c, &s, &kept), R1_REJECT_REWARD);
    s.reward = 2.0;
    assert_int_equal(r1_filter_check(&c, &s, &kept), R1_REJECT_LANGUAGE);
    c.min_language = 0.5f; /* "long" "paragraph" of 4 words */
    assert_int_equal(r1_filter_check(&c, &s, &kept), R1_REJECT_CODE_BLOCK);
    c.no_code_blocks = false;
    assert_int_equal(r1_filter_check(&c, &s, &kept), R1_REJECT_PARAGRAPH);
    c.max_paragraph_chars = 0;
    assert_int_equal(r1_filter_check(&c, &s, &kept), R1_REJECT_DUPLICATE);
    kept_texts[0] = "something else entirely";
    assert_int_equal(r1_filter_check(&c, &s, &kept), R1_REJECT_QUOTA);
    kept.n = 0;
    assert_int_equal(r1_filter_check(&c, &s, &kept), R1_REJECT_NONE);
}

/* The mix file (stages/data/mix.h): rows, a bad line named by number, the share of
 * the dataset, and a seeded choice of exactly k rows. */
static void write_file(const char *path, const char *text)
{
    FILE *f = fopen(path, "w");
    assert_non_null(f);
    fputs(text, f);
    fclose(f);
}

static void test_mix(void **state)
{
    (void)state;
    char path[] = "/tmp/r1-test-mix-XXXXXX";
    int fd = mkstemp(path);
    assert_true(fd >= 0);
    close(fd);
    struct r1_mix_set *m = NULL;
    write_file(path, "{\"q\": \"a\", \"r\": \"1\"}\n\n{\"q\": \"b\", \"r\": \"2\"}\n"
                     "{\"q\": \"c\", \"r\": \"3\"}\n{\"q\": \"d\", \"r\": \"4\"}\n");
    assert_int_equal(r1_mix_load(&m, path, "q", "r"), 0);
    assert_int_equal(m->n, 4);
    assert_string_equal(m->rows[2].prompt, "c");
    assert_string_equal(m->rows[3].response, "4");
    /* ratio 0.2 of a dataset with 8 other rows: 8·0.2/0.8 = 2; 0.5 of 3: 3 */
    assert_int_equal(r1_mix_wanted(0.2, 8), 2);
    assert_int_equal(r1_mix_wanted(0.5, 3), 3);
    assert_int_equal(r1_mix_wanted(0.0, 8), 0);
    char take[4], again[4];
    assert_int_equal(r1_mix_choose(m, 2, 7, 11, take), 0);
    assert_int_equal(take[0] + take[1] + take[2] + take[3], 2);
    assert_int_equal(r1_mix_choose(m, 2, 7, 11, again), 0);
    assert_memory_equal(take, again, 4);
    r1_mix_free(m);
    m = NULL;
    write_file(path, "{\"q\": \"a\", \"r\": \"1\"}\n{\"q\": \"b\"}\n");
    assert_int_equal(r1_mix_load(&m, path, "q", "r"), R1_EINVAL);
    assert_null(m);
    assert_non_null(strstr(r1_err_last(), ":2: a field is missing"));
    write_file(path, "\n");
    assert_int_equal(r1_mix_load(&m, path, "q", "r"), R1_EINVAL);
    assert_non_null(strstr(r1_err_last(), "no rows"));
    unlink(path);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_names),      cmocka_unit_test(test_kept),
        cmocka_unit_test(test_truncated),  cmocka_unit_test(test_lengths),
        cmocka_unit_test(test_format),     cmocka_unit_test(test_reward),
        cmocka_unit_test(test_language),   cmocka_unit_test(test_code_block),
        cmocka_unit_test(test_paragraph),  cmocka_unit_test(test_similarity),
        cmocka_unit_test(test_duplicate),  cmocka_unit_test(test_quota),
        cmocka_unit_test(test_order),      cmocka_unit_test(test_mix),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
