/* test-rewards.c - the rule-based rewards: exact values on normal cases, and for every
 * reward the adversarial ones (empty, NULL fields, several blocks, answers inside the
 * thinking, tags in the prompt, look-alike characters, invalid UTF-8, huge inputs). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <math.h>
#include <string.h>
#include <strings.h>
#include <time.h>

#include <cmocka.h>

#include "core/err.h"
#include "stages/rewards/rewards.h"

#define EPS 1e-12
/* Seconds a 4 MB input may take: linear scans need milliseconds (tens under sanitizers);
 * a quadratic one would need hours, so the bound only has to be far from both. */
#define SLOW_S 10.0

static struct r1_reward_cfg cfg_default(void)
{
    return (struct r1_reward_cfg){(char *)"test", 1.0f, R1_ANSWER_AUTO, (char *)"en", 3, -1.0f,
                                  {0}, NULL, R1_VERDICT_PROBABILITY, 0.5f};
}

/* Reward `name` of (prompt, completion, answer) with the default cfg. */
static double score(const char *name, const char *prompt, const char *completion,
                    const char *answer)
{
    const struct r1_reward_def *d = r1_reward_find(name);
    assert_non_null(d);
    struct r1_reward_cfg cfg = cfg_default();
    struct r1_reward_input in = {prompt, completion, answer, NULL, 10, 100, NAN};
    return d->fn(&in, &cfg);
}

static double score_cfg(const char *name, const char *completion, const char *answer,
                        const struct r1_reward_cfg *cfg)
{
    struct r1_reward_input in = {"", completion, answer, NULL, 10, 100, NAN};
    return r1_reward_find(name)->fn(&in, cfg);
}

/* s repeated until n bytes (a malloc'd string, cut at n). */
static char *repeat(const char *s, size_t n)
{
    char *out = malloc(n + 1);
    size_t k = strlen(s);
    for (size_t i = 0; i < n; i++)
        out[i] = s[i % k];
    out[n] = '\0';
    return out;
}

static double now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

/* ---- table ---- */

static void test_table(void **state)
{
    (void)state;
    int n = 0;
    const struct r1_reward_def *t = r1_reward_table(&n);
    const char *want[] = {"accuracy",      "format",     "format_soft", "tag_count", "language",
                          "countdown",     "length_cosine", "repetition", "code",   "judge"};
    assert_int_equal(n, (int)(sizeof(want) / sizeof(want[0])));
    for (size_t i = 0; i < sizeof(want) / sizeof(want[0]); i++) {
        const struct r1_reward_def *d = r1_reward_find(want[i]);
        assert_non_null(d);
        assert_string_equal(d->name, want[i]);
        assert_non_null(d->fn);
        assert_true(strlen(d->help) > 10);
    }
    for (int i = 0; i < n; i++)
        for (int j = i + 1; j < n; j++)
            assert_string_not_equal(t[i].name, t[j].name);
    assert_null(r1_reward_find("nope"));
    assert_null(r1_reward_find(""));
    assert_null(r1_reward_find(NULL));
    assert_null(r1_reward_find("Accuracy"));
}

/* The judge reward reads the stage's P(yes) (in.judge): probability, or binary at the
 * threshold; 0 when the stage computed none; clamped to [0, 1]; one judge per list. */
static void test_judge_reward(void **state)
{
    (void)state;
    const struct r1_reward_def *d = r1_reward_find("judge");
    assert_non_null(d);
    struct r1_reward_cfg c = cfg_default();
    struct r1_reward_input in = {"q", "<answer>3</answer>", "3", NULL, 5, 10, 0.7};
    assert_true(d->fn(&in, &c) == 0.7);
    c.verdict = R1_VERDICT_BINARY;
    c.threshold = 0.75f;
    assert_true(d->fn(&in, &c) == 0.0);
    in.judge = 0.75;
    assert_true(d->fn(&in, &c) == 1.0);
    in.judge = NAN;
    assert_true(d->fn(&in, &c) == 0.0);
    c.verdict = R1_VERDICT_PROBABILITY;
    in.judge = 1.5;
    assert_true(d->fn(&in, &c) == 1.0);
    struct r1_reward_cfg two[2] = {cfg_default(), cfg_default()};
    two[0].name = two[1].name = (char *)"judge";
    assert_int_equal(r1_reward_check_list(two, 2, "grpo.rewards"), R1_EINVAL);
    assert_non_null(strstr(r1_err_last(), "second judge"));
    assert_ptr_equal(r1_reward_find_judge(two, 2), &two[0]);
    assert_null(r1_reward_find_judge(two, 0));
}

static void test_effective_completion(void **state)
{
    (void)state;
    struct {
        const char *prompt, *completion, *want;
    } cases[] = {
        {"Q?\n<think>", "a</think>", "<think>a</think>"},
        {"Q?\n<think>\n", "a", "<think>\na"},
        {"Q? <think> \t\n", "a", "<think> \t\na"},
        {"Q?", "a", "a"},
        {"<think>x</think> Q?", "a", "a"},
        {"Q? <thinking>", "a", "a"},
        {"Q? \xEF\xBC\x9Cthink>", "a", "a"}, /* fullwidth < */
        {"", "", ""},
        {NULL, "a", "a"},
        {"<think>", NULL, "<think>"},
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        struct r1_reward_input in = {cases[i].prompt, cases[i].completion, NULL, NULL, 0, 0, NAN};
        char *s = r1_reward_effective_completion(&in);
        assert_non_null(s);
        assert_string_equal(s, cases[i].want);
        free(s);
    }
}

/* ---- answers ---- */

static void test_answers_equal(void **state)
{
    (void)state;
    const char *same[][2] = {
        {"42", "42"},
        {"42", " 42 "},
        {"0.50", "0.5"},
        {".5", "0.5"},
        {"0.5", "1/2"},
        {"1/2", "\\frac{1}{2}"},
        {"\\dfrac{3}{4}", "0.75"},
        {"\\tfrac{3}{4}", "3/4"},
        {"\\frac34", "3/4"},
        {"6/8", "3/4"},
        {"-3/4", "\\frac{-3}{4}"},
        {"-\\frac{3}{4}", "-0.75"},
        {"3/-4", "-0.75"},
        {"-5", "-5.0"},
        {"\xE2\x88\x92"
         "5",
         "-5"}, /* U+2212 MINUS SIGN */
        {"+7", "7"},
        {"-0", "0"},
        {"1,234", "1234"},
        {"1{,}234", "1234"},
        {"1,234,567.5", "1234567.5"},
        {"1\\,234", "1234"},
        {"$42$", "42"},
        {"$$42$$", "42"},
        {"\\(42\\)", "42"},
        {"\\[ 42 \\]", "42"},
        {"\\boxed{42}", "42"},
        {"$\\boxed{\\frac{1}{2}}$", "0.5"},
        {"\\text{42}", "42"},
        {"42.", "42"},
        {"100000000000000000000000000000000000001", "100000000000000000000000000000000000001.0"},
        {"1/3", "2/6"},
        {"0.333333333333333333333333333333", "333333333333333333333333333333/"
                                             "1000000000000000000000000000000"},
        {"Paris", "paris"},
        {"Paris.", " PARIS "},
        {"x + 1", "x+1"},
        {"\\left( 1, 2 \\right)", "(1,2)"},
        {"New  York", "new york"},
        {"\\text{yes}", "Yes"},
        {"50\\%", "50%"},
    };
    for (size_t i = 0; i < sizeof(same) / sizeof(same[0]); i++) {
        if (!r1_answers_equal(same[i][0], same[i][1]))
            fail_msg("expected equal: '%s' '%s'", same[i][0], same[i][1]);
        if (!r1_answers_equal(same[i][1], same[i][0]))
            fail_msg("expected equal (swapped): '%s' '%s'", same[i][1], same[i][0]);
    }
    const char *differ[][2] = {
        {"42", "43"},
        {"1/3", "0.333"},
        {"1/3", "0.3333333333333333333333333333333333"},
        {"-5", "5"},
        {"0.5", "5"},
        {"1,234", "1.234"},
        {"1,23", "123"},
        {"1,2345", "12345"},
        {"\xEF\xBC\x98", "8"}, /* fullwidth 8 is not a digit */
        {"\xEF\xBC\x8D"
         "5",
         "-5"},         /* fullwidth hyphen-minus is not a minus */
        {"1/0", "1/0"}, /* not a number, and still the same text */
        {"", ""},
        {" ", " "},
        {"$$", "$$"},
        {"", "0"},
        {"Paris", "London"},
        {"newyork", "new york"},
        {"x", "x1"},
        {"1e3", "1000"},
        {"\\frac{1}{0}", "0"},
        {"2", "\\sqrt{4}"},
    };
    for (size_t i = 0; i < sizeof(differ) / sizeof(differ[0]); i++) {
        /* "1/0" is not numeric, and equal as text to itself; the other pairs differ */
        bool eq = r1_answers_equal(differ[i][0], differ[i][1]);
        if (strcmp(differ[i][0], "1/0") == 0) {
            assert_true(eq);
            continue;
        }
        if (eq)
            fail_msg("expected different: '%s' '%s'", differ[i][0], differ[i][1]);
    }
    assert_false(r1_answers_equal(NULL, "1"));
    assert_false(r1_answers_equal("1", NULL));
    assert_false(r1_answers_equal(NULL, NULL));
    /* a literal too long to be a number compares as text */
    char *long_a = repeat("1", 500), *long_b = repeat("1", 500);
    assert_true(r1_answers_equal(long_a, long_b));
    long_b[499] = '2';
    assert_false(r1_answers_equal(long_a, long_b));
    free(long_a);
    free(long_b);
}

static void test_extract_answer(void **state)
{
    (void)state;
    char out[64];
    struct {
        const char *text;
        enum r1_answer_from from;
        const char *want; /* NULL: not found */
    } cases[] = {
        {"<think>x</think><answer> 5 </answer>", R1_ANSWER_AUTO, "5"},
        {"<answer>1</answer><answer>2</answer>", R1_ANSWER_AUTO, "1"},
        {"<answer>1</answer><answer>2</answer>", R1_ANSWER_TAG, "1"},
        {"<answer>1</answer><answer>2</answer>", R1_ANSWER_TAG_LAST, "2"},
        {"<answer>so \\boxed{7} it is</answer>", R1_ANSWER_AUTO, "7"},
        {"<answer>so \\boxed{7} it is</answer>", R1_ANSWER_TAG, "so \\boxed{7} it is"},
        {"so \\boxed{3} or \\boxed{4}", R1_ANSWER_AUTO, "4"},
        {"so \\boxed{3} or \\boxed{4}", R1_ANSWER_BOXED, "4"},
        {"\\boxed{\\frac{1}{2}}", R1_ANSWER_BOXED, "\\frac{1}{2}"},
        {"\\boxed {x^{2}}", R1_ANSWER_BOXED, "x^{2}"},
        {"\\boxed{\\{1\\}}", R1_ANSWER_BOXED, "\\{1\\}"},
        {"\\boxed{\\boxed{1}}", R1_ANSWER_BOXED, "\\boxed{1}"},
        {"\\boxed{2} \\boxed{3", R1_ANSWER_BOXED, "2"},
        {"\\boxed{3 \\boxed{2}", R1_ANSWER_BOXED, "2"},
        {"} \\boxed{2}", R1_ANSWER_BOXED, "2"},
        {"<think>\\boxed{1}</think> \\boxed{2}", R1_ANSWER_BOXED, "2"},
        {"<think>\\boxed{1}</think>", R1_ANSWER_BOXED, NULL},
        {"<think><answer>1</answer></think>", R1_ANSWER_AUTO, NULL},
        {"<think><answer>1</answer></think>", R1_ANSWER_TAG, NULL},
        {"<think><answer>1</answer></think><answer>2</answer>", R1_ANSWER_TAG, "2"},
        {"<think>unclosed <answer>1</answer>", R1_ANSWER_AUTO, NULL},
        {"<answer>unclosed", R1_ANSWER_TAG, NULL},
        {"<answer></answer>", R1_ANSWER_TAG, ""},
        {"\\boxed{}", R1_ANSWER_BOXED, ""},
        {"the answer is 5", R1_ANSWER_AUTO, NULL},
        {"", R1_ANSWER_AUTO, NULL},
        {"\xEF\xBC\x9C"
         "answer>5</answer>",
         R1_ANSWER_AUTO, NULL},                              /* fullwidth < */
        {"<\xD0\xB0nswer>5</answer>", R1_ANSWER_AUTO, NULL}, /* Cyrillic а */
        {"</answer><answer>5</answer>", R1_ANSWER_TAG, "5"},
        {"<answer>5</answer></think>", R1_ANSWER_TAG, "5"},
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        bool found = r1_extract_answer(cases[i].text, cases[i].from, out, sizeof(out));
        if (found != (cases[i].want != NULL))
            fail_msg("case %zu '%s': found %d", i, cases[i].text, found);
        if (found)
            assert_string_equal(out, cases[i].want);
        else
            assert_string_equal(out, "");
    }
    /* truncation to cap - 1 bytes; bad arguments */
    assert_true(r1_extract_answer("<answer>123456</answer>", R1_ANSWER_AUTO, out, 4));
    assert_string_equal(out, "123");
    assert_false(r1_extract_answer(NULL, R1_ANSWER_AUTO, out, sizeof(out)));
    assert_false(r1_extract_answer("<answer>1</answer>", R1_ANSWER_AUTO, NULL, 8));
    assert_false(r1_extract_answer("<answer>1</answer>", R1_ANSWER_AUTO, out, 0));
}

/* ---- accuracy ---- */

static void test_accuracy(void **state)
{
    (void)state;
    const char *a = "accuracy";
    assert_true(score(a, "Q", "<think>2+2</think><answer>4</answer>", "4") == 1.0);
    assert_true(score(a, "Q", "<think>2+2</think><answer>5</answer>", "4") == 0.0);
    assert_true(score(a, "Q", "<think>half</think><answer>$\\frac{1}{2}$</answer>", "0.5") == 1.0);
    assert_true(score(a, "Q", "so \\boxed{\\dfrac{3}{4}}", "3/4") == 1.0);
    assert_true(score(a, "Q", "<answer>1,234</answer>", "1234") == 1.0);
    assert_true(score(a, "Q",
                      "<answer>\xE2\x88\x92"
                      "5</answer>",
                      "-5") == 1.0);
    /* the template pre-filled <think>: the reasoning before </think> is thinking */
    assert_true(score(a, "Q <think>\n", "4 or \\boxed{4}</think><answer>5</answer>", "4") == 0.0);
    assert_true(score(a, "Q <think>\n", "hmm</think><answer>4</answer>", "4") == 1.0);
    assert_true(score(a, "Q <think>\n", "\\boxed{4}</think> no answer", "4") == 0.0);
    /* answer only inside the thinking */
    assert_true(score(a, "Q", "<think><answer>4</answer> \\boxed{4}</think>", "4") == 0.0);
    assert_true(score(a, "Q", "<think>\\boxed{4}", "4") == 0.0);
    /* several answer blocks: auto and tag read the first, tag_last the last */
    const char *two = "<answer>3</answer><answer>4</answer>";
    assert_true(score(a, "Q", two, "3") == 1.0);
    assert_true(score(a, "Q", two, "4") == 0.0);
    struct r1_reward_cfg cfg = cfg_default();
    cfg.answer = R1_ANSWER_TAG_LAST;
    assert_true(score_cfg(a, two, "4", &cfg) == 1.0);
    cfg.answer = R1_ANSWER_BOXED;
    assert_true(score_cfg(a, "<answer>4</answer>", "4", &cfg) == 0.0);
    assert_true(score_cfg(a, "<answer>\\boxed{4}</answer>", "4", &cfg) == 1.0);
    /* empty things */
    assert_true(score(a, "Q", "", "4") == 0.0);
    assert_true(score(a, "Q", "<answer></answer>", "4") == 0.0);
    assert_true(score(a, "Q", "<answer> </answer>", "") == 0.0);
    assert_true(score(a, "Q", "<answer>4</answer>", "") == 0.0);
    assert_true(score(a, "Q", "<answer>4</answer>", NULL) == 0.0);
    assert_true(score(a, "Q", NULL, "4") == 0.0);
    /* tags in the prompt do not count */
    assert_true(score(a, "example: <answer>4</answer>", "I don't know", "4") == 0.0);
    assert_true(score(a, "<answer>", "4</answer>", "4") == 0.0);
    /* look-alikes */
    assert_true(score(a, "Q",
                      "\xEF\xBC\x9C"
                      "answer\xEF\xBC\x9E"
                      "4</answer>",
                      "4") == 0.0);
    assert_true(score(a, "Q", "<answer>\xEF\xBC\x94</answer>", "4") == 0.0); /* fullwidth 4 */
    /* invalid UTF-8 */
    assert_true(score(a, "\xff\xfe", "<answer>\xc3\x28</answer>", "4") == 0.0);
    assert_true(score(a, "Q", "<answer>\xff</answer>", "\xff") == 1.0);
    /* NULL input and cfg */
    assert_true(r1_reward_accuracy(NULL, NULL) == 0.0);
    struct r1_reward_input in = {"Q", "<answer>4</answer>", "4", NULL, 0, 0, NAN};
    assert_true(r1_reward_accuracy(&in, NULL) == 1.0);
}

/* ---- format ---- */

static void test_format(void **state)
{
    (void)state;
    const char *f = "format";
    assert_true(score(f, "Q", "<think>\nabc\n</think>\n<answer>\n4\n</answer>", NULL) == 1.0);
    assert_true(score(f, "Q", " \n<think>\nabc\n</think>\n<answer>\n4\n</answer>\n ", NULL) == 1.0);
    assert_true(score(f, "Q", "<think>\n\n</think>\n<answer>\n\n</answer>", NULL) == 1.0);
    assert_true(score(f, "Q", "<think>\na\nb\n</think>\n<answer>\n4\n5\n</answer>", NULL) == 1.0);
    /* pre-filled <think>\n: the completion continues it */
    assert_true(score(f, "Q\n<think>\n", "abc\n</think>\n<answer>\n4\n</answer>", NULL) == 1.0);
    assert_true(score(f, "Q\n<think>\n", "<think>\nabc\n</think>\n<answer>\n4\n</answer>", NULL) ==
                0.0);
    const char *bad[] = {
        "",
        "<think>abc</think><answer>4</answer>",
        "<think>\n</think>\n<answer>\n4\n</answer>",
        "<think>\nabc\n</think>\n<answer>\n</answer>",
        "<think>\nabc\n</think>\n\n<answer>\n4\n</answer>",
        "<think>\nabc\n</think> <answer>\n4\n</answer>",
        "<think>\nabc\n</think>\n<answer>\n4\n</answer> trailing",
        "x<think>\nabc\n</think>\n<answer>\n4\n</answer>",
        "<think>\na\n</think>\n<think>\nb\n</think>\n<answer>\n4\n</answer>",
        "<think>\nabc\n</think>\n<answer>\n4\n</answer>\n<answer>\n5\n</answer>",
        "<think>\n<think>\n</think>\n<answer>\n4\n</answer>",
        "<answer>\n4\n</answer>\n<think>\nabc\n</think>",
        "<think>\nabc\n</think>\n<answer>\n4\n</answer></think>",
        "<think>\nabc\n</think>\n<answer>\n4\n",
        "\xEF\xBC\x9Cthink>\nabc\n</think>\n<answer>\n4\n</answer>",
        "<th\xD1\x96nk>\nabc\n</think>\n<answer>\n4\n</answer>", /* Cyrillic і */
        "<think>\r\nabc\r\n</think>\r\n<answer>\r\n4\r\n</answer>",
    };
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
        if (score(f, "Q", bad[i], NULL) != 0.0)
            fail_msg("format should be 0 for case %zu", i);
    /* the prompt's tags are not the completion's */
    assert_true(score(f, "<think>\nabc\n</think>\n", "<answer>\n4\n</answer>", NULL) == 0.0);
    assert_true(score(f, NULL, NULL, NULL) == 0.0);
    assert_true(score(f, "Q", "<think>\n<answer>\n4\n</answer>\n</think>", NULL) == 0.0);
}

static void test_format_soft(void **state)
{
    (void)state;
    const char *f = "format_soft";
    const char *good[] = {
        "<think>abc</think><answer>4</answer>",
        "<think>abc</think> \n\t <answer>4</answer>",
        "\n<think>\nabc\n</think>\n<answer>\n4\n</answer>\n",
        "<think></think><answer></answer>",
        "<think>abc</think><answer>4</answer> and some words after",
    };
    for (size_t i = 0; i < sizeof(good) / sizeof(good[0]); i++)
        if (score(f, "Q", good[i], NULL) != 1.0)
            fail_msg("format_soft should be 1 for case %zu", i);
    assert_true(score(f, "Q <think>", "abc</think><answer>4</answer>", NULL) == 1.0);
    const char *bad[] = {
        "",
        "<think>abc</think> so <answer>4</answer>",
        "lead <think>abc</think><answer>4</answer>",
        "<answer>4</answer><think>abc</think>",
        "<think>abc<answer>4</answer></think>",
        "<think>a</think><think>b</think><answer>4</answer>",
        "<think>a</think><answer>4</answer><answer>5</answer>",
        "<think><think>a</think></think><answer>4</answer>",
        "<think>abc</think><answer>4",
        "<think>abc<answer>4</answer>",
        "</think><answer>4</answer>",
        "<think>abc</think>\xEF\xBC\x9C"
        "answer>4</answer>",
    };
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
        if (score(f, "Q", bad[i], NULL) != 0.0)
            fail_msg("format_soft should be 0 for case %zu", i);
    assert_true(score(f, "<think>abc</think>", "<answer>4</answer>", NULL) == 0.0);
}

static void test_tag_count(void **state)
{
    (void)state;
    const char *t = "tag_count";
    assert_true(score(t, "Q", "<think>a</think><answer>4</answer>", NULL) == 1.0);
    assert_true(score(t, "Q", "<answer>4</answer><think>a</think>", NULL) == 1.0);
    assert_true(score(t, "Q", "<think>a</think>4", NULL) == 0.5);
    assert_true(score(t, "Q", "<think>a", NULL) == 0.25);
    assert_true(score(t, "Q", "<think>a</think><answer>4", NULL) == 0.75);
    assert_true(score(t, "Q", "", NULL) == 0.0);
    assert_true(score(t, "Q", NULL, NULL) == 0.0);
    assert_true(score(t, "Q", "<think>a</think><answer>4</answer></answer>", NULL) == 0.0);
    assert_true(score(t, "Q", "<think><think>a</think><answer>4</answer>", NULL) == 0.0);
    /* the pre-filled tag counts once; a second one from the model is a repeat */
    assert_true(score(t, "Q <think>", "a</think><answer>4</answer>", NULL) == 1.0);
    assert_true(score(t, "Q <think>", "<think>a</think><answer>4</answer>", NULL) == 0.0);
    /* prompt tags are not counted */
    assert_true(score(t, "<think></think><answer></answer>", "4", NULL) == 0.0);
    /* look-alikes are text */
    assert_true(score(t, "Q", "\xEF\xBC\x9Cthink>a</think><answer>4</answer>", NULL) == 0.75);
    assert_true(score(t, "Q", "<THINK>a</think><answer>4</answer>", NULL) == 0.75);
}

/* ---- language ---- */

static double lang(const char *code, const char *completion)
{
    struct r1_reward_cfg cfg = cfg_default();
    cfg.language = (char *)code;
    return score_cfg("language", completion, NULL, &cfg);
}

static void test_language(void **state)
{
    (void)state;
    assert_true(lang("en", "<think>the cat sat</think><answer>4</answer>") == 1.0);
    assert_true(fabs(lang("en", "<think>hello мир</think>") - 0.5) < EPS);
    assert_true(fabs(lang("ru", "<think>hello мир</think>") - 0.5) < EPS);
    assert_true(lang("fr", "<think>café déjà-vu, naïve!</think>") == 1.0);
    assert_true(lang("de", "<think>Größe 42 über</think>") == 1.0);
    /* a word mixing scripts is not the target's */
    assert_true(lang("en", "<think>abcабв def</think>") == 0.5);
    /* Han: one word per character */
    assert_true(lang("zh", "<think>这是测试</think>") == 1.0);
    assert_true(fabs(lang("zh", "<think>这是 test</think>") - 2.0 / 3.0) < EPS);
    assert_true(fabs(lang("en", "<think>这是 test</think>") - 1.0 / 3.0) < EPS);
    assert_true(lang("zh", "<think>我想,答案是四。</think>") == 1.0);
    /* Japanese: hiragana, katakana and kanji; Korean: hangul words */
    assert_true(lang("ja", "<think>これはテストです。漢字</think>") == 1.0);
    assert_true(fabs(lang("zh", "<think>これは漢字</think>") - 0.4) < EPS); /* 2 of 5 */
    assert_true(lang("ko", "<think>이것은 테스트입니다</think>") == 1.0);
    assert_true(fabs(lang("ko", "<think>이것은 test</think>") - 0.5) < EPS);
    assert_true(lang("ar", "<think>مرحبا بالعالم</think>") == 1.0);
    assert_true(lang("el", "<think>γειά σου κόσμε</think>") == 1.0);
    assert_true(lang("he", "<think>שלום עולם</think>") == 1.0);
    assert_true(lang("hi", "<think>नमस्ते दुनिया</think>") == 1.0);
    assert_true(lang("th", "<think>สวัสดี</think>") == 1.0);
    assert_true(lang("uk", "<think>привіт світ</think>") == 1.0);
    /* digits and punctuation are not words; thinking without words mixes no language */
    assert_true(lang("en", "<think>1 + 2 = 3 !!! ... 42</think>") == 1.0);
    assert_true(lang("zh", "<think>\n12+7 = 10+7 + 2 = 19\n</think>") == 1.0);
    assert_true(lang("en", "<think> \n\t </think>") == 0.0);
    assert_true(lang("en", "<think>x = 12, y = 3</think>") == 1.0);
    /* only the thinking counts; no think block scores 0 */
    assert_true(lang("en", "<think>the cat</think><answer>这是测试</answer>") == 1.0);
    assert_true(lang("en", "no think block here") == 0.0);
    assert_true(lang("en", "<think></think>") == 0.0);
    assert_true(lang("en", "") == 0.0);
    assert_true(lang("en", "\xEF\xBC\x9Cthink>the cat</think>") == 0.0);
    /* several think blocks: all of them; an unclosed one runs to the end */
    assert_true(fabs(lang("en", "<think>a</think>x<think>б</think>") - 0.5) < EPS);
    assert_true(lang("en", "<think>the cat sat") == 1.0);
    /* the pre-filled <think> opens the thinking; the prompt is not read */
    struct r1_reward_cfg cfg = cfg_default();
    struct r1_reward_input in = {
        "<think>мир</think> Q <think>", "the cat</think>", NULL, NULL, 0, 0, NAN};
    assert_true(r1_reward_language(&in, &cfg) == 1.0);
    /* invalid UTF-8: each bad byte is a letter of no script */
    assert_true(fabs(lang("en", "<think>hello \xff</think>") - 0.5) < EPS);
    assert_true(fabs(lang("en", "<think>hel\xc3\x28lo world</think>") - 2.0 / 3.0) < EPS);
    assert_true(lang("en", "<think>\xed\xa0\x80 \xc0\xaf \xf8</think>") == 0.0); /* all invalid */
    assert_true(lang("en", "<think>cat \xe2\x82</think>") == 0.5);               /* truncated */
    /* fullwidth Latin letters are Latin; a combining accent continues the word */
    assert_true(lang("en", "<think>\xEF\xBD\x81\xEF\xBD\x82 cafe\xCC\x81</think>") == 1.0);
    /* unknown or missing language scores 0 */
    assert_true(lang("xx", "<think>the cat</think>") == 0.0);
    assert_true(lang(NULL, "<think>the cat</think>") == 0.0);
    in = (struct r1_reward_input){"", "<think>the cat</think>", NULL, NULL, 0, 0, NAN};
    assert_true(r1_reward_language(&in, NULL) == 1.0); /* NULL cfg: en */
}

static void test_language_known(void **state)
{
    (void)state;
    const char *known[] = {"en",  "fr", "de",    "es",      "zh",    "ja",   "ko",
                           "ru",  "uk", "ar",    "el",      "he",    "hi",   "th",
                           "fil", "EN", "zh-CN", "zh_Hant", "pt_BR", "en-US"};
    for (size_t i = 0; i < sizeof(known) / sizeof(known[0]); i++)
        if (!r1_reward_language_known(known[i]))
            fail_msg("'%s' should be known", known[i]);
    const char *unknown[] = {"",       "e",     "xx",  "english", "en-",
                             "en-U S", "zz-CN", "-en", "e1",      "\xD0\xB5n"};
    for (size_t i = 0; i < sizeof(unknown) / sizeof(unknown[0]); i++)
        if (r1_reward_language_known(unknown[i]))
            fail_msg("'%s' should be unknown", unknown[i]);
    assert_false(r1_reward_language_known(NULL));
}

/* ---- countdown ---- */

static double countdown(const char *prompt, const char *completion, const char *meta_json)
{
    json_t *meta = meta_json ? json_loads(meta_json, 0, NULL) : NULL;
    if (meta_json)
        assert_non_null(meta);
    struct r1_reward_input in = {prompt, completion, NULL, meta, 0, 0, NAN};
    double r = r1_reward_countdown(&in, NULL);
    json_decref(meta);
    return r;
}

static void test_countdown(void **state)
{
    (void)state;
    const char *m = "{\"numbers\": [3, 5, 7], \"target\": 22}";
    struct {
        const char *completion;
        double want;
    } cases[] = {
        {"<think>3*5=15, +7</think><answer>3*5+7</answer>", 1.0},
        {"<answer> ( 3 * 5 ) + 7 </answer>", 1.0},
        {"<answer>7+5*3</answer>", 1.0},
        {"<answer>-(-3*5)+7</answer>", 1.0},
        {"<answer>3*5-7</answer>", 0.1},     /* wrong value */
        {"<answer>3*5+7+0</answer>", 0.1},   /* extra number */
        {"<answer>3*5+7-3+3</answer>", 0.1}, /* reuses numbers */
        {"<answer>15+7</answer>", 0.1},      /* other numbers */
        {"<answer>3*5+7=22</answer>", 0.1},  /* '=' is not allowed */
        {"<answer>3*5+7.0</answer>", 0.1},
        {"<answer>3 x 5 + 7</answer>", 0.1},
        {"<answer>3*5+7/(5-5)</answer>", 0.1}, /* division by zero */
        {"<answer>(3*5+7</answer>", 0.1},
        {"<answer>3*5+7)</answer>", 0.1},
        {"<answer>3**5+7</answer>", 0.1},
        {"<answer>3*5+\xEF\xBC\x97</answer>", 0.1}, /* fullwidth 7 */
        {"<answer>3*5\xE2\x88\x92"
         "7</answer>",
         0.1}, /* U+2212 is not an operator here */
        {"<answer>\xff</answer>", 0.1},
        {"<answer>22</answer>", 0.1},
        {"<answer>99999999999999999999*3*5+7</answer>", 0.1}, /* literal overflow */
        {"<answer>1</answer><answer>3*5+7</answer>", 1.0},    /* the last block counts */
        {"<answer>3*5+7</answer><answer>1</answer>", 0.1},
        {"<think><answer>3*5+7</answer></think>", 0.0}, /* only inside the thinking */
        {"<think><answer>3*5+7</answer></think><answer>3+5+7</answer>", 0.1},
        {"<answer></answer>", 0.0},
        {"<answer>  \n </answer>", 0.0},
        {"3*5+7", 0.0},
        {"<answer>3*5+7", 0.0},
        {"", 0.0},
        {"\xEF\xBC\x9C"
         "answer>3*5+7</answer>",
         0.0},
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        double r = countdown("Q", cases[i].completion, m);
        if (r != cases[i].want)
            fail_msg("countdown case %zu '%s': %g, want %g", i, cases[i].completion, r,
                     cases[i].want);
    }
    /* exact rationals: 8 / (3 - 8/3) = 24 */
    assert_true(countdown("Q", "<answer>8/(3-8/3)</answer>",
                          "{\"numbers\": [3, 3, 8, 8], \"target\": 24}") == 1.0);
    assert_true(countdown("Q", "<answer>(8/3)*3</answer>",
                          "{\"numbers\": [3, 3, 8], \"target\": 8}") == 1.0);
    assert_true(
        countdown("Q", "<answer>7/2+3</answer>", "{\"numbers\": [2, 3, 7], \"target\": 6}") == 0.1);
    /* duplicates in the numbers: a multiset */
    assert_true(countdown("Q", "<answer>5+5</answer>", "{\"numbers\": [5, 5], \"target\": 10}") ==
                1.0);
    assert_true(countdown("Q", "<answer>5*2</answer>", "{\"numbers\": [5, 5], \"target\": 10}") ==
                0.1);
    /* negative target */
    assert_true(countdown("Q", "<answer>3-5-7</answer>",
                          "{\"numbers\": [3, 5, 7], \"target\": -9}") == 1.0);
    /* the pre-filled <think>: the model's </think> closes it */
    assert_true(countdown("Q <think>",
                          "3*5 then 7 <answer>1</answer></think><answer>3*5+7</answer>", m) == 1.0);
    /* tags in the prompt do not count */
    assert_true(countdown("<answer>3*5+7</answer>", "no idea", m) == 0.0);
    /* overflow in intermediate results is invalid, not wrapped */
    assert_true(countdown("Q",
                          "<answer>1000000000*1000000000*1000000000*1000000000-1000000000</answer>",
                          "{\"numbers\": [1000000000, 1000000000, 1000000000, 1000000000, "
                          "1000000000], \"target\": 0}") == 0.1);
    /* malformed meta */
    const char *ok = "<answer>3*5+7</answer>";
    assert_true(countdown("Q", ok, NULL) == 0.0);
    assert_true(countdown("Q", ok, "[3, 5, 7]") == 0.0);
    assert_true(countdown("Q", ok, "{\"numbers\": [3, 5, 7]}") == 0.0);
    assert_true(countdown("Q", ok, "{\"target\": 22}") == 0.0);
    assert_true(countdown("Q", ok, "{\"numbers\": [3, 5, 7], \"target\": \"22\"}") == 0.0);
    assert_true(countdown("Q", ok, "{\"numbers\": [3, 5, 7], \"target\": 22.0}") == 0.0);
    assert_true(countdown("Q", ok, "{\"numbers\": [3, \"5\", 7], \"target\": 22}") == 0.0);
    assert_true(countdown("Q", ok, "{\"numbers\": 3, \"target\": 22}") == 0.0);
    assert_true(countdown("Q", ok, "{\"numbers\": [], \"target\": 22}") == 0.0);
    /* deep nesting and long equations are invalid, quickly */
    size_t depth = 100000;
    char *deep = malloc(2 * depth + 64);
    size_t k = 0;
    k += (size_t)sprintf(deep, "<answer>");
    for (size_t i = 0; i < depth; i++)
        deep[k++] = '(';
    k += (size_t)sprintf(deep + k, "3*5+7");
    for (size_t i = 0; i < depth; i++)
        deep[k++] = ')';
    sprintf(deep + k, "</answer>");
    double t0 = now();
    assert_true(countdown("Q", deep, m) == 0.1);
    assert_true(now() - t0 < 1.0);
    free(deep);
    assert_true(
        countdown("Q", "<answer>((((((((((((((((((((3))))))))))))))))))))*5+7</answer>", m) == 1.0);
    char nested[256];
    k = (size_t)sprintf(nested, "<answer>");
    for (int i = 0; i < 70; i++)
        nested[k++] = '(';
    k += (size_t)sprintf(nested + k, "3");
    for (int i = 0; i < 70; i++)
        nested[k++] = ')';
    sprintf(nested + k, "*5+7</answer>");
    assert_true(countdown("Q", nested, m) == 0.1); /* deeper than 64 */
}

/* ---- length and repetition ---- */

static double cosine(const char *completion, int tokens, int max)
{
    struct r1_reward_cfg cfg = cfg_default();
    struct r1_reward_input in = {"Q", completion, "4", NULL, tokens, max, NAN};
    return r1_reward_length_cosine(&in, &cfg);
}

static void test_length_cosine(void **state)
{
    (void)state;
    const char *right = "<answer>4</answer>", *wrong = "<answer>5</answer>";
    /* correct: 0.5 + 0.25 * (1 + cos(pi p)); wrong: -0.5 - 0.25 * (1 + cos(pi p)) */
    assert_true(fabs(cosine(right, 0, 100) - 1.0) < EPS);
    assert_true(fabs(cosine(right, 50, 100) - 0.75) < EPS);
    assert_true(fabs(cosine(right, 100, 100) - 0.5) < EPS);
    assert_true(fabs(cosine(right, 25, 100) - (0.5 + 0.25 * (1.0 + sqrt(0.5)))) < EPS);
    assert_true(fabs(cosine(wrong, 0, 100) - -1.0) < EPS);
    assert_true(fabs(cosine(wrong, 50, 100) - -0.75) < EPS);
    assert_true(fabs(cosine(wrong, 100, 100) - -0.5) < EPS);
    assert_true(fabs(cosine(wrong, 75, 100) - (-0.5 - 0.25 * (1.0 - sqrt(0.5)))) < EPS);
    /* clamped progress; a limit <= 0 counts as at the limit */
    assert_true(fabs(cosine(right, 500, 100) - 0.5) < EPS);
    assert_true(fabs(cosine(right, -5, 100) - 1.0) < EPS);
    assert_true(fabs(cosine(wrong, 10, 0) - -0.5) < EPS);
    /* no answer, empty completion, answer inside the thinking: wrong */
    assert_true(fabs(cosine("", 0, 100) - -1.0) < EPS);
    assert_true(fabs(cosine(NULL, 0, 100) - -1.0) < EPS);
    assert_true(fabs(cosine("<think><answer>4</answer></think>", 0, 100) - -1.0) < EPS);
    struct r1_reward_cfg cfg = cfg_default();
    struct r1_reward_input in = {"Q", right, NULL, NULL, 0, 100, NAN};
    assert_true(fabs(r1_reward_length_cosine(&in, &cfg) - -1.0) < EPS); /* no reference */
    cfg.answer = R1_ANSWER_BOXED;
    in.answer = "4";
    assert_true(fabs(r1_reward_length_cosine(&in, &cfg) - -1.0) < EPS); /* no box */
    in.answer = "";
    assert_true(fabs(r1_reward_length_cosine(&in, &cfg) - -1.0) < EPS); /* empty reference */
    /* several blocks (auto reads the first), prompt tags, look-alikes, pre-filled <think> */
    assert_true(fabs(cosine("<answer>4</answer><answer>5</answer>", 0, 100) - 1.0) < EPS);
    assert_true(fabs(cosine("<answer>5</answer><answer>4</answer>", 0, 100) - -1.0) < EPS);
    assert_true(fabs(cosine("\xEF\xBC\x9C" "answer>4</answer>", 0, 100) - -1.0) < EPS);
    assert_true(fabs(cosine("<answer>\xEF\xBC\x94</answer>", 0, 100) - -1.0) < EPS);
    assert_true(fabs(cosine("<answer>\xff</answer>", 0, 100) - -1.0) < EPS);
    struct r1_reward_input pin = {"<answer>4</answer>", "none", "4", NULL, 0, 100, NAN};
    assert_true(fabs(r1_reward_length_cosine(&pin, NULL) - -1.0) < EPS);
    pin = (struct r1_reward_input){"Q <think>", "<answer>4</answer>", "4", NULL, 50, 100, NAN};
    assert_true(fabs(r1_reward_length_cosine(&pin, NULL) - -0.75) < EPS); /* inside thinking */
    double r = r1_reward_length_cosine(NULL, NULL);
    assert_true(isfinite(r) && r >= -1.0 && r <= 1.0);
}

static double repetition(const char *completion, int64_t ngram, float max_penalty)
{
    struct r1_reward_cfg cfg = cfg_default();
    cfg.ngram = ngram;
    cfg.max_penalty = max_penalty;
    return score_cfg("repetition", completion, NULL, &cfg);
}

/* Distinct n-grams by brute force: the reference for the doubling algorithm. */
static double repetition_naive(const char *text, int n, double max_penalty)
{
    const char *w[512];
    size_t len[512];
    int W = 0;
    for (const char *p = text; *p;) {
        while (*p == ' ')
            p++;
        if (!*p)
            break;
        w[W] = p;
        while (*p && *p != ' ')
            p++;
        len[W] = (size_t)(p - w[W]);
        W++;
    }
    if (W < n)
        return 0.0;
    int total = W - n + 1, distinct = 0;
    for (int i = 0; i < total; i++) {
        bool seen = false;
        for (int j = 0; j < i && !seen; j++) {
            bool eq = true;
            for (int k = 0; k < n && eq; k++)
                eq = len[i + k] == len[j + k] && strncasecmp(w[i + k], w[j + k], len[i + k]) == 0;
            seen = eq;
        }
        distinct += !seen;
    }
    return (1.0 - (double)distinct / total) * max_penalty;
}

static void test_repetition(void **state)
{
    (void)state;
    /* ab ba ab ba ab: 2 distinct of 5 -> (1 - 0.4) * -1 */
    assert_true(fabs(repetition("a b a b a b", 2, -1.0f) - -0.6) < EPS);
    assert_true(fabs(repetition("a b a b a b", 3, -1.0f) - -0.5) < EPS); /* aba bab aba bab */
    assert_true(fabs(repetition("a b a b a b", 1, -2.0f) - -2.0 * (1.0 - 2.0 / 6.0)) < EPS);
    assert_true(fabs(repetition("A a\ta\n", 1, -1.0f) - -(1.0 - 1.0 / 3.0)) < EPS);
    assert_true(repetition("the quick brown fox jumps", 3, -1.0f) == 0.0);
    assert_true(repetition("a b a b a b", 6, -1.0f) == 0.0); /* one n-gram */
    assert_true(repetition("a b", 3, -1.0f) == 0.0);         /* fewer words than n */
    assert_true(repetition("", 3, -1.0f) == 0.0);
    assert_true(repetition("   \n\t ", 1, -1.0f) == 0.0);
    assert_true(repetition("a a a a", 2, 0.0f) == 0.0);
    assert_true(repetition("a a a a", 0, -1.0f) == 0.0); /* bad n scores 0 */
    /* words are whitespace-separated byte strings: punctuation and UTF-8 stay in them */
    assert_true(fabs(repetition("a, a a, a", 1, -1.0f) - -0.5) < EPS);
    assert_true(fabs(repetition("\xff \xff \xd0\x96 \xd0\x96", 1, -1.0f) - -0.5) < EPS);
    /* look-alikes are different words; U+3000 is not a separator (ASCII whitespace only) */
    assert_true(repetition("\xEF\xBD\x81 a", 1, -1.0f) == 0.0);
    assert_true(repetition("a\xE3\x80\x80" "a", 1, -1.0f) == 0.0);
    /* the completion only, not the prompt nor a pre-filled <think> */
    struct r1_reward_cfg cfg = cfg_default();
    struct r1_reward_input in = {"x x x x <think>", "a b c d", NULL, NULL, 0, 0, NAN};
    assert_true(r1_reward_repetition(&in, &cfg) == 0.0);
    in.completion = NULL;
    assert_true(r1_reward_repetition(&in, &cfg) == 0.0);
    assert_true(fabs(r1_reward_repetition(
                         &(struct r1_reward_input){"", "x x x x x", NULL, NULL, 0, 0, NAN}, NULL) -
                     -(1.0 - 1.0 / 3.0)) < EPS); /* NULL cfg: n = 3, max_penalty = -1 */
    /* against brute force on random texts over a small vocabulary */
    const char *vocab[] = {"a", "b", "A", "bb", "c"};
    char text[2048];
    unsigned seed = 12345;
    for (int trial = 0; trial < 200; trial++) {
        size_t k = 0;
        seed = seed * 1103515245u + 12345u;
        int words = 1 + (int)((seed >> 16) % 120);
        for (int i = 0; i < words; i++) {
            seed = seed * 1103515245u + 12345u;
            const char *v = vocab[(seed >> 16) % 5];
            k += (size_t)sprintf(text + k, "%s ", v);
        }
        text[k] = '\0';
        int n = 1 + trial % 13;
        double got = repetition(text, n, -1.0f), want = repetition_naive(text, n, -1.0);
        if (fabs(got - want) > EPS)
            fail_msg("trial %d n %d: %g want %g", trial, n, got, want);
    }
}

/* ---- every reward, adversarial inputs ---- */

static void check_range(const char *name, double r)
{
    assert_true(isfinite(r));
    double lo = 0.0, hi = 1.0;
    if (strcmp(name, "length_cosine") == 0)
        lo = -1.0;
    if (strcmp(name, "repetition") == 0) {
        lo = -1.0;
        hi = 0.0;
    }
    if (r < lo || r > hi)
        fail_msg("%s: %g outside [%g, %g]", name, r, lo, hi);
}

static void test_all_rewards_total(void **state)
{
    (void)state;
    json_t *meta = json_loads("{\"numbers\": [3, 5, 7], \"target\": 22}", 0, NULL);
    json_t *bad_meta = json_loads("{\"numbers\": [1.5], \"target\": null}", 0, NULL);
    const char *texts[] = {
        "",
        "<think>",
        "</think>",
        "<answer>",
        "</answer>",
        "<think></think><answer></answer>",
        "<answer><think>4</answer></think>",
        "<think><answer>4</think></answer>",
        "\\boxed{",
        "\\boxed{}}}}",
        "}}}{{{\\boxed{{{",
        "<answer>\\boxed{\\boxed{\\boxed{4</answer>",
        "\xff\xfe\xfd\xc0\x80\xed\xa0\x80\xf4\x90\x80\x80",
        "<think>\xff</think><answer>\xff</answer>",
        "\xEF\xBC\x9Cthink\xEF\xBC\x9E\xEF\xBC\x98\xEF\xBC\x9C/think\xEF\xBC\x9E",
        "<answer>\xE2\x88\x92\xE2\x88\x92\xE2\x88\x92</answer>",
        "<answer>-</answer><answer>/</answer><answer>\\frac{}{}</answer>",
        "<answer>1/0</answer>",
        "<answer>$</answer>",
        "<answer>\\left</answer>",
        "<answer>99999999999999999999999999999999999999999999999999999999999999999999999999"
        "9999999999999999999999999999999999999999999999999999999999999999999/0.0000000000001"
        "</answer>",
    };
    const char *answers[] = {NULL, "", "4", "\xff", "\\boxed{", "$", "-", "1/0"};
    const json_t *metas[] = {NULL, meta, bad_meta};
    const char *prompts[] = {NULL, "", "<think>", "<answer>4</answer>", "\xff<think>\n"};
    int n;
    const struct r1_reward_def *table = r1_reward_table(&n);
    struct r1_reward_cfg cfg = cfg_default();
    for (int d = 0; d < n; d++) {
        check_range(table[d].name, table[d].fn(NULL, NULL));
        check_range(table[d].name, table[d].fn(NULL, &cfg));
        for (size_t t = 0; t < sizeof(texts) / sizeof(texts[0]); t++)
            for (size_t a = 0; a < sizeof(answers) / sizeof(answers[0]); a++)
                for (size_t m = 0; m < sizeof(metas) / sizeof(metas[0]); m++)
                    for (size_t p = 0; p < sizeof(prompts) / sizeof(prompts[0]); p++) {
                        struct r1_reward_input in = {prompts[p], texts[t], answers[a],
                                                     metas[m],   (int)t,   (int)a - 2, NAN};
                        check_range(table[d].name, table[d].fn(&in, &cfg));
                        check_range(table[d].name, table[d].fn(&in, NULL));
                    }
    }
    json_decref(meta);
    json_decref(bad_meta);
}

/* 4 MB inputs built to trip quadratic scans: every reward must finish fast (SLOW_S). */
static void test_huge_inputs(void **state)
{
    (void)state;
    const size_t size = 4u << 20;
    const char *patterns[] = {
        "<think>",
        "</think>",
        "<answer>",
        "</answer>",
        "<answer>4</answer>",
        "\\boxed{",
        "\\boxed{4}",
        "{",
        "}",
        "<",
        "a ",
        "the cat sat on ",
        "这是",
        "\xff",
        "<think>\\boxed{",
        "(",
        "$",
        "\\left(",
        "a b c d e f g h ",
    };
    json_t *meta = json_loads("{\"numbers\": [3, 5, 7], \"target\": 22}", 0, NULL);
    int n;
    const struct r1_reward_def *table = r1_reward_table(&n);
    struct r1_reward_cfg cfg = cfg_default();
    for (size_t i = 0; i < sizeof(patterns) / sizeof(patterns[0]); i++) {
        char *text = repeat(patterns[i], size);
        for (int d = 0; d < n; d++) {
            /* the same text as completion, and as the reference answer */
            struct r1_reward_input in = {"Q <think>", text, "4", meta, 1000, 100, NAN};
            double t0 = now();
            check_range(table[d].name, table[d].fn(&in, &cfg));
            in.answer = text;
            in.completion = "<answer>4</answer>";
            check_range(table[d].name, table[d].fn(&in, &cfg));
            double dt = now() - t0;
            if (dt > SLOW_S)
                fail_msg("%s on 4 MB of '%s': %.2f s", table[d].name, patterns[i], dt);
        }
        double t0 = now();
        r1_answers_equal(text, text);
        char *out = malloc(size + 1);
        for (int from = R1_ANSWER_AUTO; from <= R1_ANSWER_TAG_LAST; from++)
            r1_extract_answer(text, (enum r1_answer_from)from, out, size + 1);
        free(out);
        if (now() - t0 > SLOW_S)
            fail_msg("answers on 4 MB of '%s': %.2f s", patterns[i], now() - t0);
        free(text);
    }
    /* repetition at the schema's largest n on a long repetitive text */
    char *words = repeat("x y ", size);
    cfg.ngram = 64;
    struct r1_reward_input in = {"", words, NULL, NULL, 0, 0, NAN};
    double t0 = now();
    double r = r1_reward_repetition(&in, &cfg);
    assert_true(now() - t0 < SLOW_S);
    /* 2M words, 2 distinct 64-grams of 2M - 63 */
    double total = (double)(size / 2 - 63);
    assert_true(fabs(r - -(1.0 - 2.0 / total)) < 1e-9);
    free(words);
    json_decref(meta);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_table),         cmocka_unit_test(test_effective_completion),
        cmocka_unit_test(test_answers_equal), cmocka_unit_test(test_extract_answer),
        cmocka_unit_test(test_accuracy),      cmocka_unit_test(test_format),
        cmocka_unit_test(test_format_soft),   cmocka_unit_test(test_tag_count),
        cmocka_unit_test(test_language),      cmocka_unit_test(test_language_known),
        cmocka_unit_test(test_countdown),     cmocka_unit_test(test_length_cosine),
        cmocka_unit_test(test_repetition),    cmocka_unit_test(test_all_rewards_total),
        cmocka_unit_test(test_huge_inputs),
        cmocka_unit_test(test_judge_reward),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
