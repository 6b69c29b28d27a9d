/* test-datagen.c - task generators (arith, countdown) and prompt sets: determinism,
 * disjoint splits, correct answers (recomputed by a small evaluator here), solvable
 * countdown instances, demonstration format and noise, spec errors, JSONL prompt
 * files, generated prompt sets, templates and source hashes. */
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
#include "core/sha256.h"
#include "core/tokenizer.h"
#include "stages/data/gen.h"
#include "stages/data/prompts.h"

static struct r1_tokenizer *tok;
static char dir[] = "/tmp/r1-test-datagen-XXXXXX";

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

static struct r1_datagen *parse_ok(const char *spec)
{
    struct r1_datagen *g = NULL;
    int rc = r1_datagen_parse(&g, spec);
    if (rc)
        fail_msg("%s: %s", spec, r1_err_last());
    return g;
}

static json_t *example(const struct r1_datagen *g, uint64_t seed, enum r1_split split, int64_t i)
{
    json_t *o = NULL;
    int rc = r1_datagen_example(g, seed, split, i, &o);
    if (rc)
        fail_msg("example %lld: %s", (long long)i, r1_err_last());
    return o;
}

static const char *str(const json_t *o, const char *key)
{
    const json_t *v = json_object_get(o, key);
    assert_true(json_is_string(v));
    return json_string_value(v);
}

/* Examples 0..n-1 as JSONL bytes (malloc'd). */
static char *write_all(const char *spec, uint64_t seed, enum r1_split split, int64_t n, size_t *len)
{
    struct r1_datagen *g = parse_ok(spec);
    char *buf = NULL;
    FILE *f = open_memstream(&buf, len);
    assert_non_null(f);
    assert_int_equal(r1_datagen_write(g, seed, split, n, f), 0);
    fclose(f);
    r1_datagen_free(g);
    return buf;
}

/* ---- a tiny integer evaluator: + - * / and parentheses, / must divide exactly ---------- */

struct ev {
    const char *s;
    int bad;
};

static int64_t ev_sum(struct ev *e);

static int64_t ev_atom(struct ev *e)
{
    if (*e->s == '(') {
        e->s++;
        int64_t v = ev_sum(e);
        if (*e->s != ')')
            e->bad = 1;
        else
            e->s++;
        return v;
    }
    if (*e->s < '0' || *e->s > '9') {
        e->bad = 1;
        return 0;
    }
    int64_t v = 0;
    while (*e->s >= '0' && *e->s <= '9')
        v = 10 * v + (*e->s++ - '0');
    return v;
}

static int64_t ev_prod(struct ev *e)
{
    int64_t v = ev_atom(e);
    while (*e->s == '*' || *e->s == '/') {
        char op = *e->s++;
        int64_t w = ev_atom(e);
        if (op == '*') {
            v *= w;
        } else if (w == 0 || v % w) {
            e->bad = 1;
            return 0;
        } else {
            v /= w;
        }
    }
    return v;
}

static int64_t ev_sum(struct ev *e)
{
    int64_t v = ev_prod(e);
    while (*e->s == '+' || *e->s == '-') {
        char op = *e->s++;
        int64_t w = ev_prod(e);
        v = op == '+' ? v + w : v - w;
    }
    return v;
}

/* Evaluates expr completely; fails the test when it is malformed. */
static int64_t eval_expr(const char *expr)
{
    struct ev e = {expr, 0};
    int64_t v = ev_sum(&e);
    if (e.bad || *e.s)
        fail_msg("cannot evaluate '%s'", expr);
    return v;
}

/* The expression of an arith prompt "What is EXPR?". */
static int64_t eval_arith_prompt(const char *prompt)
{
    char expr[256];
    size_t n = strlen(prompt);
    assert_true(strncmp(prompt, "What is ", 8) == 0 && prompt[n - 1] == '?');
    assert_true(n - 9 < sizeof(expr));
    memcpy(expr, prompt + 8, n - 9);
    expr[n - 9] = '\0';
    return eval_expr(expr);
}

/* Splits a demo completion into reasoning and answer; checks the exact shape. */
static void demo_parts(const char *text, const char *templated, char *why, size_t wcap, char *ans,
                       size_t acap)
{
    size_t tl = strlen(templated);
    assert_memory_equal(text, templated, tl);
    const char *c = text + tl;
    assert_true(strncmp(c, "<think>\n", 8) == 0);
    const char *mid = strstr(c, "\n</think>\n<answer>\n");
    assert_non_null(mid);
    size_t wl = (size_t)(mid - (c + 8));
    assert_true(wl > 0 && wl < wcap);
    memcpy(why, c + 8, wl);
    why[wl] = '\0';
    const char *a = mid + strlen("\n</think>\n<answer>\n");
    size_t al = strlen(a);
    assert_true(al > strlen("\n</answer>"));
    assert_string_equal(a + al - strlen("\n</answer>"), "\n</answer>");
    al -= strlen("\n</answer>");
    assert_true(al < acap);
    memcpy(ans, a, al);
    ans[al] = '\0';
    assert_true(ans[0] != ' ' && why[0] != ' ');
}

/* The last number of the reasoning (after its final " = "). */
static const char *last_number(const char *why)
{
    const char *last = NULL;
    for (const char *s = strstr(why, " = "); s; s = strstr(s + 1, " = "))
        last = s;
    assert_non_null(last);
    return last + 3;
}

/* ---- tests ---------------------------------------------------------------------------- */

/* Same (spec, seed, split) -> same bytes; example i alone equals line i of the file;
 * another seed gives other data. */
static void test_determinism(void **state)
{
    (void)state;
    const char *specs[] = {"arith:ops=+-*,terms=3,demo=1,noise=0.3",
                           "countdown:numbers=4,demo=1,noise=0.2,template=r1-zero"};
    for (int s = 0; s < 2; s++) {
        size_t la, lb, lc;
        char *a = write_all(specs[s], 7, R1_SPLIT_TRAIN, 300, &la);
        char *b = write_all(specs[s], 7, R1_SPLIT_TRAIN, 300, &lb);
        char *c = write_all(specs[s], 8, R1_SPLIT_TRAIN, 300, &lc);
        assert_int_equal(la, lb);
        assert_memory_equal(a, b, la);
        assert_true(la != lc || memcmp(a, c, la) != 0);
        /* line 123 equals example 123 computed on its own */
        const char *line = a;
        for (int k = 0; k < 123; k++)
            line = strchr(line, '\n') + 1;
        struct r1_datagen *g = parse_ok(specs[s]);
        json_t *o = example(g, 7, R1_SPLIT_TRAIN, 123);
        char *d = json_dumps(o, JSON_COMPACT | JSON_PRESERVE_ORDER);
        assert_memory_equal(line, d, strlen(d));
        assert_int_equal(line[strlen(d)], '\n');
        free(d);
        json_decref(o);
        r1_datagen_free(g);
        free(a);
        free(b);
        free(c);
    }
    /* a pinned example: generation must not drift between versions */
    struct r1_datagen *g = parse_ok("arith:demo=1");
    json_t *o = example(g, 1, R1_SPLIT_TRAIN, 0);
    char *d = json_dumps(o, JSON_COMPACT | JSON_PRESERVE_ORDER);
    assert_string_equal(d, "{\"prompt\":\"What is 91+7?\",\"answer\":\"98\",\"text\":\"What is "
                           "91+7?<think>\\n91+7 = 90 + 1+7 = 90 + 8 = 98\\n</think>\\n<answer>\\n"
                           "98\\n</answer>\",\"completion\":\"<think>\\n91+7 = 90 + 1+7 = 90 + 8 = "
                           "98\\n</think>\\n<answer>\\n98\\n</answer>\"}");
    free(d);
    json_decref(o);
    r1_datagen_free(g);
}

static int cmp_str(const void *a, const void *b)
{
    return strcmp(*(char *const *)a, *(char *const *)b);
}

/* The canonical problem text: arith the prompt, countdown sorted numbers and target. */
static char *canon(const json_t *o)
{
    const json_t *nums = json_object_get(o, "numbers");
    if (!nums)
        return strdup(str(o, "prompt"));
    int v[8], n = (int)json_array_size(nums);
    assert_true(n <= 8);
    for (int k = 0; k < n; k++)
        v[k] = (int)json_integer_value(json_array_get(nums, (size_t)k));
    for (int a = 0; a < n; a++) /* insertion sort */
        for (int b = a; b > 0 && v[b - 1] > v[b]; b--) {
            int t = v[b];
            v[b] = v[b - 1];
            v[b - 1] = t;
        }
    char buf[256];
    int len = 0;
    for (int k = 0; k < n; k++)
        len += snprintf(buf + len, sizeof(buf) - (size_t)len, "%d,", v[k]);
    snprintf(buf + len, sizeof(buf) - (size_t)len, "->%lld",
             (long long)json_integer_value(json_object_get(o, "target")));
    return strdup(buf);
}

/* 2000 train and 200 eval problems (eval from another seed too) never coincide. */
static void test_disjoint_splits(void **state)
{
    (void)state;
    const char *specs[] = {"arith", "arith:digits=1,ops=+-*", "countdown"};
    for (int s = 0; s < 3; s++) {
        struct r1_datagen *g = parse_ok(specs[s]);
        enum { NT = 2000, NE = 200 };
        char **train = malloc(NT * sizeof(char *));
        for (int i = 0; i < NT; i++) {
            json_t *o = example(g, 11, R1_SPLIT_TRAIN, i);
            train[i] = canon(o);
            json_decref(o);
        }
        qsort(train, NT, sizeof(char *), cmp_str);
        int distinct_eval = 0;
        char *prev = NULL;
        for (int i = 0; i < NE; i++) {
            json_t *o = example(g, i % 2 ? 11 : 12, R1_SPLIT_EVAL, i);
            char *c = canon(o);
            if (bsearch(&c, train, NT, sizeof(char *), cmp_str))
                fail_msg("%s: eval problem %s is also in train", specs[s], c);
            distinct_eval += !prev || strcmp(prev, c) != 0;
            free(prev);
            prev = c;
            json_decref(o);
        }
        free(prev);
        assert_true(distinct_eval > 5);
        for (int i = 0; i < NT; i++)
            free(train[i]);
        free(train);
        r1_datagen_free(g);
    }
}

/* Answers equal the prompt's value (with * before + and -); demos without noise reach it
 * in their last reasoning line and in <answer>. */
static void test_arith_answers(void **state)
{
    (void)state;
    const char *specs[] = {"arith:demo=1", "arith:digits=1-3,ops=+-*,terms=4,demo=1",
                           "arith:digits=3,ops=-,terms=3,demo=1",
                           "arith:digits=6,ops=*,terms=3,demo=1", "arith:digits=2,ops=*+,demo=1"};
    int negatives = 0;
    for (int s = 0; s < 5; s++) {
        struct r1_datagen *g = parse_ok(specs[s]);
        for (int i = 0; i < 400; i++) {
            json_t *o = example(g, 5, R1_SPLIT_TRAIN, i);
            const char *prompt = str(o, "prompt"), *answer = str(o, "answer");
            char want[32], why[4096], ans[64];
            snprintf(want, sizeof(want), "%lld", (long long)eval_arith_prompt(prompt));
            assert_string_equal(answer, want);
            negatives += answer[0] == '-';
            demo_parts(str(o, "text"), prompt, why, sizeof(why), ans, sizeof(ans));
            assert_string_equal(ans, answer);
            assert_string_equal(last_number(why), answer);
            /* every "x op y = ... = r" line is true arithmetic at its ends */
            char *lines = strdup(why), *save = NULL;
            for (char *l = strtok_r(lines, "\n", &save); l; l = strtok_r(NULL, "\n", &save)) {
                char lhs[128];
                const char *eq = strstr(l, " = ");
                assert_non_null(eq);
                assert_true((size_t)(eq - l) < sizeof(lhs));
                memcpy(lhs, l, (size_t)(eq - l));
                lhs[eq - l] = '\0';
                if (lhs[0] == '-') { /* a negative running value: "-a op b" */
                    memmove(lhs + 1, lhs, strlen(lhs) + 1);
                    lhs[0] = '0';
                }
                assert_int_equal(eval_expr(lhs), strtoll(last_number(l), NULL, 10));
            }
            free(lines);
            json_decref(o);
        }
        r1_datagen_free(g);
    }
    assert_true(negatives > 0);
}

/* Two-digit operands with nonzero units: the exact place-value steps. */
static void test_arith_reasoning_shape(void **state)
{
    (void)state;
    struct r1_datagen *g = parse_ok("arith:digits=2,ops=+-*,demo=1");
    int seen[3] = {0, 0, 0};
    for (int i = 0; i < 500; i++) {
        json_t *o = example(g, 4, R1_SPLIT_TRAIN, i);
        int a, b;
        char op;
        assert_int_equal(sscanf(str(o, "prompt"), "What is %d%c%d?", &a, &op, &b), 3);
        char why[4096], ans[64], want[256];
        demo_parts(str(o, "text"), str(o, "prompt"), why, sizeof(why), ans, sizeof(ans));
        int ta = a - a % 10, tb = b - b % 10, ua = a % 10, ub = b % 10;
        if (ua == 0 || ub == 0 || (op == '-' && a < b)) {
            json_decref(o);
            continue;
        }
        if (op == '+')
            snprintf(want, sizeof(want), "%d+%d = %d+%d + %d+%d = %d + %d = %d", a, b, ta, tb, ua,
                     ub, ta + tb, ua + ub, a + b);
        else if (op == '-')
            snprintf(want, sizeof(want), "%d-%d = %d-%d - %d = %d - %d = %d", a, b, a, tb, ub,
                     a - tb, ub, a - b);
        else
            snprintf(want, sizeof(want), "%d*%d = %d*%d + %d*%d = %d + %d = %d", a, b, a, tb, a, ub,
                     a * tb, a * ub, a * b);
        assert_string_equal(why, want);
        seen[op == '+' ? 0 : op == '-' ? 1 : 2]++;
        json_decref(o);
    }
    r1_datagen_free(g);
    assert_true(seen[0] > 10 && seen[1] > 10 && seen[2] > 10);
    /* a negative difference wraps the positive one */
    char why[4096];
    struct r1_datagen *h = parse_ok("arith:digits=2,ops=-,demo=1");
    int found = 0;
    for (int i = 0; i < 200 && !found; i++) {
        json_t *o = example(h, 4, R1_SPLIT_TRAIN, i);
        int a, b;
        char ans[64];
        assert_int_equal(sscanf(str(o, "prompt"), "What is %d-%d?", &a, &b), 2);
        demo_parts(str(o, "text"), str(o, "prompt"), why, sizeof(why), ans, sizeof(ans));
        if (a < b && b % 10 && a % 10 && a >= 10) {
            char want[256];
            snprintf(want, sizeof(want), "%d-%d = -(%d-%d) = -(%d-%d - %d) = -(%d - %d) = %d", a, b,
                     b, a, b, a - a % 10, a % 10, b - (a - a % 10), a % 10, a - b);
            assert_string_equal(why, want);
            found = 1;
        }
        json_decref(o);
    }
    r1_datagen_free(h);
    assert_true(found);
}

/* Noise flips about that fraction of demos to a nearby wrong number, consistently;
 * noise=0 leaves every demo right; "answer" always stays right. */
static void test_noise(void **state)
{
    (void)state;
    struct r1_datagen *g = parse_ok("arith:digits=1-3,ops=+-*,terms=3,demo=1,noise=0.5");
    int wrong = 0;
    enum { N = 2000 };
    for (int i = 0; i < N; i++) {
        json_t *o = example(g, 3, R1_SPLIT_TRAIN, i);
        char why[4096], ans[64];
        const char *answer = str(o, "answer");
        assert_int_equal(strtoll(answer, NULL, 10), eval_arith_prompt(str(o, "prompt")));
        demo_parts(str(o, "text"), str(o, "prompt"), why, sizeof(why), ans, sizeof(ans));
        assert_string_equal(last_number(why), ans);
        long long d = strtoll(ans, NULL, 10) - strtoll(answer, NULL, 10);
        if (d != 0) {
            wrong++;
            assert_true(d >= -10 && d <= 10);
        }
        json_decref(o);
    }
    r1_datagen_free(g);
    assert_in_range(wrong, 4 * N / 10, 6 * N / 10);

    g = parse_ok("countdown:numbers=4,demo=1,noise=0");
    for (int i = 0; i < 300; i++) {
        json_t *o = example(g, 3, R1_SPLIT_TRAIN, i);
        char why[4096], ans[256];
        demo_parts(str(o, "text"), str(o, "prompt"), why, sizeof(why), ans, sizeof(ans));
        assert_string_equal(ans, str(o, "answer"));
        assert_int_equal(strtoll(last_number(why), NULL, 10),
                         json_integer_value(json_object_get(o, "target")));
        json_decref(o);
    }
    r1_datagen_free(g);

    /* countdown noise=1: the demo's equation misses the target, its last line agrees */
    g = parse_ok("countdown:demo=1,noise=1");
    int missed = 0;
    for (int i = 0; i < 300; i++) {
        json_t *o = example(g, 3, R1_SPLIT_TRAIN, i);
        char why[4096], ans[256];
        demo_parts(str(o, "text"), str(o, "prompt"), why, sizeof(why), ans, sizeof(ans));
        int64_t v = eval_expr(ans), target = json_integer_value(json_object_get(o, "target"));
        assert_int_equal(strtoll(last_number(why), NULL, 10), v);
        assert_int_equal(eval_expr(str(o, "answer")), target);
        missed += v != target;
        json_decref(o);
    }
    r1_datagen_free(g);
    assert_true(missed >= 290);
}

/* terse=F: about that fraction of demos think in one line "PROBLEM = RESULT" (the demo's
 * answer, noisy or not); the others are those of the spec without the knob, as are all
 * of terse=0. */
static void test_terse(void **state)
{
    (void)state;
    struct r1_datagen *g = parse_ok("arith:digits=2,ops=+-,demo=1,noise=0.5,terse=0.3");
    struct r1_datagen *w = parse_ok("arith:digits=2,ops=+-,demo=1,noise=0.5");
    struct r1_datagen *z = parse_ok("arith:digits=2,ops=+-,demo=1,noise=0.5,terse=0");
    enum { N = 2000 };
    int terse = 0, wrong = 0;
    for (int i = 0; i < N; i++) {
        json_t *o = example(g, 4, R1_SPLIT_TRAIN, i), *ow = example(w, 4, R1_SPLIT_TRAIN, i);
        json_t *oz = example(z, 4, R1_SPLIT_TRAIN, i);
        assert_string_equal(str(oz, "text"), str(ow, "text"));
        assert_string_equal(str(o, "prompt"), str(ow, "prompt"));
        char why[4096], ans[64], canon_eq[160];
        demo_parts(str(o, "text"), str(o, "prompt"), why, sizeof(why), ans, sizeof(ans));
        assert_string_equal(last_number(why), ans);
        const char *q = str(o, "prompt") + strlen("What is ");
        snprintf(canon_eq, sizeof(canon_eq), "%.*s = %s", (int)(strlen(q) - 1), q, ans);
        if (strcmp(why, canon_eq) == 0) {
            terse++;
        } else {
            char why_w[4096], ans_w[64];
            demo_parts(str(ow, "text"), str(ow, "prompt"), why_w, sizeof(why_w), ans_w, sizeof(ans_w));
            assert_string_equal(why, why_w);
        }
        wrong += strcmp(ans, str(o, "answer")) != 0;
        json_decref(o);
        json_decref(ow);
        json_decref(oz);
    }
    r1_datagen_free(g);
    r1_datagen_free(w);
    r1_datagen_free(z);
    assert_in_range(terse, 2 * N / 10, 4 * N / 10);
    assert_in_range(wrong, 4 * N / 10, 6 * N / 10);
}

/* The stored solution uses each given number once and evaluates to the target. */
static void test_countdown_solvable(void **state)
{
    (void)state;
    const char *specs[] = {"countdown", "countdown:numbers=4,max=50",
                           "countdown:numbers=6,max=100,target_max=1000",
                           "countdown:numbers=5,max=9,target_max=30"};
    const int maxes[] = {20, 50, 100, 9}, tmaxes[] = {100, 100, 1000, 30}, counts[] = {3, 4, 6, 5};
    for (int s = 0; s < 4; s++) {
        struct r1_datagen *g = parse_ok(specs[s]);
        for (int i = 0; i < 300; i++) {
            json_t *o = example(g, 9, i % 3 ? R1_SPLIT_TRAIN : R1_SPLIT_EVAL, i);
            const json_t *nums = json_object_get(o, "numbers");
            int64_t target = json_integer_value(json_object_get(o, "target"));
            assert_true(json_is_array(nums));
            assert_int_equal(json_array_size(nums), counts[s]);
            assert_in_range(target, 1, tmaxes[s]);
            const char *ans = str(o, "answer");
            assert_int_equal(eval_expr(ans), target);
            /* the numbers in the answer are the given ones, each once */
            int given[8], used[8], ng = counts[s], nu = 0;
            for (int k = 0; k < ng; k++) {
                given[k] = (int)json_integer_value(json_array_get(nums, (size_t)k));
                assert_in_range(given[k], 1, maxes[s]);
            }
            for (const char *p = ans; *p;) {
                if (*p >= '0' && *p <= '9') {
                    assert_true(nu < 8);
                    used[nu++] = (int)strtol(p, (char **)&p, 10);
                } else {
                    assert_non_null(strchr("+-*/()", *p));
                    p++;
                }
            }
            assert_int_equal(nu, ng);
            for (int k = 0; k < nu; k++) {
                int found = 0;
                for (int m = 0; m < ng && !found; m++)
                    if (given[m] == used[k]) {
                        given[m] = -1;
                        found = 1;
                    }
                assert_true(found);
            }
            char want[256], list[128] = "";
            for (int k = 0; k < ng; k++) {
                char num[16];
                snprintf(num, sizeof(num), "%s%lld", k ? ", " : "",
                         (long long)json_integer_value(json_array_get(nums, (size_t)k)));
                strcat(list, num);
            }
            snprintf(want, sizeof(want),
                     "Using the numbers [%s], create an equation that equals "
                     "%lld. You can use + - * / and each number once.",
                     list, (long long)target);
            assert_string_equal(str(o, "prompt"), want);
            json_decref(o);
        }
        r1_datagen_free(g);
    }
}

/* "text" is exactly template(prompt) + "<think>\n" + reasoning + "\n</think>\n<answer>\n" +
 * answer + "\n</answer>", for both templates. */
static void test_demo_format(void **state)
{
    (void)state;
    struct r1_datagen *g = parse_ok("arith:demo=1,template=r1-zero");
    json_t *o = example(g, 1, R1_SPLIT_TRAIN, 0);
    const char *text = str(o, "text");
    const char *want = "A conversation between User and Assistant. The user asks a question, and "
                       "the Assistant solves it.";
    assert_memory_equal(text, want, strlen(want));
    assert_non_null(strstr(text, "User: What is 91+7? Assistant:\n<think>\n91+7 = 90 + 1+7 = "
                                 "90 + 8 = 98\n</think>\n<answer>\n98\n</answer>"));
    assert_string_equal(text + strlen(text) - strlen("\n</answer>"), "\n</answer>");
    json_decref(o);
    r1_datagen_free(g);

    /* no demo: no "text"; countdown demo with template none starts with the prompt */
    g = parse_ok("arith");
    o = example(g, 1, R1_SPLIT_TRAIN, 0);
    assert_null(json_object_get(o, "text"));
    assert_int_equal(json_object_size(o), 2);
    json_decref(o);
    r1_datagen_free(g);
    g = parse_ok("countdown:demo=1");
    for (int i = 0; i < 50; i++) {
        o = example(g, 2, R1_SPLIT_EVAL, i);
        char why[4096], ans[256];
        demo_parts(str(o, "text"), str(o, "prompt"), why, sizeof(why), ans, sizeof(ans));
        assert_string_equal(ans, str(o, "answer"));
        json_decref(o);
    }
    r1_datagen_free(g);
}

static void expect_spec_error(const char *spec, const char *needle)
{
    struct r1_datagen *g = (struct r1_datagen *)1;
    r1_err_clear();
    assert_int_equal(r1_datagen_parse(&g, spec), R1_EINVAL);
    assert_null(g);
    if (!strstr(r1_err_last(), needle))
        fail_msg("spec '%s': message '%s' lacks '%s'", spec, r1_err_last(), needle);
}

static void test_spec_errors(void **state)
{
    (void)state;
    expect_spec_error("", "empty");
    expect_spec_error("sudoku", "unknown generator 'sudoku'; generators: arith, countdown");
    expect_spec_error("arith:foo=1", "arith: unknown knob 'foo'; knobs: digits, ops, terms, terse, "
                                     "demo, noise, template");
    expect_spec_error("countdown:digits=2", "countdown: unknown knob 'digits'; knobs: numbers");
    expect_spec_error("arith:digits=0", "digits='0'");
    expect_spec_error("arith:digits=7", "1 <= A <= B <= 6");
    expect_spec_error("arith:digits=3-1", "digits='3-1'");
    expect_spec_error("arith:digits=x", "digits='x'");
    expect_spec_error("arith:ops=+/", "has '/'");
    expect_spec_error("arith:ops=", "not key=value");
    expect_spec_error("arith:terms=1", "terms=1 is out of range [2, 4]");
    expect_spec_error("arith:terms=two", "terms='two' is not an integer");
    expect_spec_error("arith:noise=1.5", "noise='1.5'");
    expect_spec_error("arith:noise=-0.1", "noise='-0.1'");
    expect_spec_error("arith:terse=2", "terse='2'");
    expect_spec_error("countdown:terse=0.5", "unknown knob 'terse'");
    expect_spec_error("prefs:terse=0.5", "unknown knob 'terse'");
    expect_spec_error("arith:demo=2", "demo=2 is out of range [0, 1]");
    expect_spec_error("arith:template=chatml", "template='chatml'");
    expect_spec_error("arith:digits=6,terms=4,ops=*", "keep digits*terms <= 18");
    expect_spec_error("arith:demo", "'demo' is not key=value");
    expect_spec_error("arith:demo=1,", "empty knob");
    expect_spec_error("arith:terms=3,terms=2", "given twice");
    expect_spec_error("countdown:numbers=9", "countdown: numbers=9 is out of range [3, 6]");
    expect_spec_error("countdown:max=1", "max=1 is out of range");
    expect_spec_error("countdown:target_max=0", "target_max=0 is out of range");

    const char *good[] = {"arith",
                          "arith:",
                          "arith:digits=2",
                          "arith:digits=1-6,ops=+",
                          "arith:digits=6,terms=3,ops=*",
                          "arith:ops=*-+,terms=4,digits=4",
                          "countdown:numbers=6,max=1000,target_max=1000000",
                          "countdown:demo=1,noise=0.25,template=r1-zero",
                          "arith:template=none"};
    for (size_t k = 0; k < sizeof(good) / sizeof(good[0]); k++)
        r1_datagen_free(parse_ok(good[k]));
    const char *help = r1_datagen_help();
    const char *words[] = {"arith", "countdown",   "digits=", "ops=",   "terms=",   "numbers=",
                           "max=",  "target_max=", "demo=",   "noise=", "template="};
    for (size_t k = 0; k < sizeof(words) / sizeof(words[0]); k++)
        assert_non_null(strstr(help, words[k]));
    assert_string_equal(r1_split_name(R1_SPLIT_TRAIN), "train");
    assert_string_equal(r1_split_name(R1_SPLIT_EVAL), "eval");
}

static void test_templates(void **state)
{
    (void)state;
    assert_string_equal(r1_prompt_template_find("none"), "{prompt}");
    const char *z = r1_prompt_template_find("r1-zero");
    assert_non_null(z);
    assert_null(r1_prompt_template_find("chatml"));
    const char *head = "A conversation between User and Assistant.";
    assert_memory_equal(z, head, strlen(head));
    assert_string_equal(z + strlen(z) - strlen("User: {prompt}. Assistant:"),
                        "User: {prompt}. Assistant:");
    assert_non_null(strstr(z, "<think> reasoning process here </think> <answer> answer here "
                              "</answer>."));

    char *t = r1_prompt_template_apply("none", "What is 2+3?");
    assert_string_equal(t, "What is 2+3?");
    free(t);
    t = r1_prompt_template_apply(NULL, "plain");
    assert_string_equal(t, "plain");
    free(t);
    t = r1_prompt_template_apply("r1-zero", "What is 2+3?");
    assert_memory_equal(t, head, strlen(head));
    assert_string_equal(t + strlen(t) - strlen("User: What is 2+3? Assistant:\n"),
                        "User: What is 2+3? Assistant:\n");
    free(t);
    t = r1_prompt_template_apply("r1-zero", "Compute 2+3");
    assert_string_equal(t + strlen(t) - strlen("User: Compute 2+3. Assistant:\n"),
                        "User: Compute 2+3. Assistant:\n");
    free(t);
    t = r1_prompt_template_apply("r1-zero", "Reach 24.");
    assert_string_equal(t + strlen(t) - strlen("User: Reach 24. Assistant:\n"),
                        "User: Reach 24. Assistant:\n");
    free(t);
    t = r1_prompt_template_apply("Q: {prompt}\nA: ({prompt})", "x");
    assert_string_equal(t, "Q: x\nA: (x)");
    free(t);
    r1_err_clear();
    assert_null(r1_prompt_template_apply("Question: ", "x"));
    assert_int_equal(r1_err_code(), R1_EINVAL);
    assert_non_null(strstr(r1_err_last(), "{prompt}"));
}

static struct r1_prompt_spec file_spec(const char *path)
{
    struct r1_prompt_spec sp;
    memset(&sp, 0, sizeof(sp));
    sp.path = path;
    return sp;
}

static void test_prompt_set_jsonl(void **state)
{
    (void)state;
    const char *text = "{\"q\": \"What is 2+3?\", \"a\": 5, \"id\": 1}\n"
                       "\n"
                       "  \n"
                       "{\"q\": \"Half of one?\", \"a\": 0.5}\n"
                       "{\"q\": \"Say hi\", \"a\": \"hi\"}\n"
                       "{\"q\": \"No answer\"}\n"
                       "{\"q\": \"Null answer\", \"a\": null}";
    struct r1_prompt_spec sp = file_spec(write_tmp("p.jsonl", text));
    sp.prompt_field = "q";
    sp.answer_field = "a";
    sp.template_ = "r1-zero";
    struct r1_prompt_set *s = NULL;
    assert_int_equal(r1_prompt_set_load(&s, &sp, tok), 0);
    assert_int_equal(s->n, 5);
    assert_string_equal(s->items[0].question, "What is 2+3?");
    assert_string_equal(s->items[0].answer, "5");
    assert_string_equal(s->items[1].answer, "0.5");
    assert_string_equal(s->items[2].answer, "hi");
    assert_string_equal(s->items[3].answer, "");
    assert_string_equal(s->items[4].answer, "");
    assert_int_equal(json_integer_value(json_object_get(s->items[0].meta, "id")), 1);
    char *want = r1_prompt_template_apply("r1-zero", "What is 2+3?");
    assert_string_equal(s->items[0].text, want);
    int32_t *ids = NULL;
    int n = 0, longest = 0;
    assert_int_equal(r1_tokenizer_encode(tok, want, strlen(want), &ids, &n), 0);
    assert_int_equal(s->items[0].n_tokens, n);
    assert_memory_equal(s->items[0].tokens, ids, (size_t)n * sizeof(int32_t));
    free(ids);
    free(want);
    for (int64_t i = 0; i < s->n; i++)
        longest = s->items[i].n_tokens > longest ? s->items[i].n_tokens : longest;
    assert_int_equal(s->max_tokens, longest);
    char sha[R1_SHA256_HEX];
    assert_int_equal(r1_sha256_bytes(sha, text, strlen(text)), 0);
    assert_string_equal(s->sha256, sha);
    r1_prompt_set_free(s);

    /* default fields, no template: the question as is */
    sp = file_spec(write_tmp("d.jsonl", "{\"prompt\":\"hi\"}\n"));
    assert_int_equal(r1_prompt_set_load(&s, &sp, tok), 0);
    assert_int_equal(s->n, 1);
    assert_string_equal(s->items[0].text, "hi");
    assert_int_equal(s->max_tokens, 2);
    assert_string_equal(s->sha256,
                        "855a2484322c2b66d92157e7f1594aec200407b1ad216a7caa38a37effc60641");
    r1_prompt_set_free(s);
}

static void expect_load_error(struct r1_prompt_spec *sp, const char *needle)
{
    struct r1_prompt_set *s = (struct r1_prompt_set *)1;
    r1_err_clear();
    assert_int_equal(r1_prompt_set_load(&s, sp, tok), R1_EINVAL);
    assert_null(s);
    if (!strstr(r1_err_last(), needle))
        fail_msg("message '%s' lacks '%s'", r1_err_last(), needle);
}

static void test_prompt_set_errors(void **state)
{
    (void)state;
    struct r1_prompt_spec sp = file_spec(write_tmp("bad.jsonl", "{\"prompt\":\"a\"}\n\n{oops\n"));
    expect_load_error(&sp, "bad.jsonl:3: not a JSON object");
    sp = file_spec(write_tmp("arr.jsonl", "[1, 2]\n"));
    expect_load_error(&sp, "arr.jsonl:1: not a JSON object");
    sp = file_spec(write_tmp("miss.jsonl", "{\"prompt\":\"a\"}\n{\"question\":\"b\"}\n"));
    expect_load_error(&sp, "miss.jsonl:2: field \"prompt\" is missing");
    sp.prompt_field = "question";
    expect_load_error(&sp, "miss.jsonl:1: field \"question\" is missing");
    sp = file_spec(write_tmp("num.jsonl", "{\"prompt\":7}\n"));
    expect_load_error(&sp, "num.jsonl:1: field \"prompt\"");
    sp = file_spec(write_tmp("ans.jsonl", "{\"prompt\":\"a\",\"answer\":true}\n"));
    expect_load_error(&sp, "ans.jsonl:1: field \"answer\" must be a string or a number");
    sp = file_spec(write_tmp("empty.jsonl", "\n  \n"));
    expect_load_error(&sp, "empty.jsonl: no prompts");
    sp = file_spec("/nonexistent/p.jsonl");
    expect_load_error(&sp, "/nonexistent/p.jsonl");
    sp = file_spec(write_tmp("tpl.jsonl", "{\"prompt\":\"a\"}\n"));
    sp.template_ = "no placeholder";
    expect_load_error(&sp, "tpl.jsonl:1: template");
    sp = file_spec(
        write_tmp("long.jsonl", "{\"prompt\":\"short\"}\n{\"prompt\":\"0123456789x\"}\n"));
    sp.max_prompt_tokens = 10;
    expect_load_error(&sp, "long.jsonl:2: the prompt is 11 tokens");
    assert_non_null(strstr(r1_err_last(), "limit of 10"));
    sp.max_prompt_tokens = 11;
    struct r1_prompt_set *s = NULL;
    assert_int_equal(r1_prompt_set_load(&s, &sp, tok), 0);
    r1_prompt_set_free(s);
    memset(&sp, 0, sizeof(sp));
    expect_load_error(&sp, "no source");
}

static void test_prompt_set_generator(void **state)
{
    (void)state;
    struct r1_prompt_spec sp;
    memset(&sp, 0, sizeof(sp));
    sp.generator = "arith";
    sp.gen_n = 10;
    sp.gen_seed = 1;
    sp.split = R1_SPLIT_TRAIN;
    sp.prompt_field = "ignored"; /* generated examples always use prompt/answer */
    struct r1_prompt_set *s = NULL;
    assert_int_equal(r1_prompt_set_load(&s, &sp, tok), 0);
    assert_int_equal(s->n, 10);
    /* sha256 of "generator:arith;seed=1;split=train;n=10", pinned */
    assert_string_equal(s->sha256,
                        "ae5dd01edf76bc6f77329f9b2146000e89487569b357ac1476df72d541a11a78");
    struct r1_datagen *g = parse_ok("arith");
    for (int i = 0; i < 10; i++) {
        json_t *o = example(g, 1, R1_SPLIT_TRAIN, i);
        assert_string_equal(s->items[i].question, str(o, "prompt"));
        assert_string_equal(s->items[i].text, str(o, "prompt"));
        assert_string_equal(s->items[i].answer, str(o, "answer"));
        assert_true(json_equal(s->items[i].meta, o));
        json_decref(o);
    }
    r1_datagen_free(g);
    r1_prompt_set_free(s);

    /* eval split, countdown meta, template */
    sp.generator = "countdown:numbers=4";
    sp.split = R1_SPLIT_EVAL;
    sp.gen_n = 20;
    sp.template_ = "r1-zero";
    assert_int_equal(r1_prompt_set_load(&s, &sp, tok), 0);
    assert_true(json_is_array(json_object_get(s->items[3].meta, "numbers")));
    assert_true(json_is_integer(json_object_get(s->items[3].meta, "target")));
    assert_non_null(strstr(s->items[3].text, s->items[3].question));
    char sha[R1_SHA256_HEX];
    const char *src = "generator:countdown:numbers=4;seed=1;split=eval;n=20";
    assert_int_equal(r1_sha256_bytes(sha, src, strlen(src)), 0);
    assert_string_equal(s->sha256, sha);
    r1_prompt_set_free(s);

    sp.max_prompt_tokens = 50;
    expect_load_error(&sp, "example 0: the prompt is");
    sp.max_prompt_tokens = 0;
    sp.gen_n = 0;
    expect_load_error(&sp, "size >= 1");
    sp.gen_n = 5;
    sp.generator = "arith:terms=9";
    expect_load_error(&sp, "terms=9");
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_determinism),
        cmocka_unit_test(test_disjoint_splits),
        cmocka_unit_test(test_arith_answers),
        cmocka_unit_test(test_arith_reasoning_shape),
        cmocka_unit_test(test_noise),
        cmocka_unit_test(test_terse),
        cmocka_unit_test(test_countdown_solvable),
        cmocka_unit_test(test_demo_format),
        cmocka_unit_test(test_spec_errors),
        cmocka_unit_test(test_templates),
        cmocka_unit_test(test_prompt_set_jsonl),
        cmocka_unit_test(test_prompt_set_errors),
        cmocka_unit_test(test_prompt_set_generator),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
