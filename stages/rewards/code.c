/* code.c - the `code` reward: the last fenced code block of the completion (outside the
 * thinking) runs in the sandbox (sandbox.h) against the item's tests; the reward is the
 * fraction of tests whose stdout matches.  Item format (in->meta):
 *
 *   {"language": "python" | "c",             optional: else the fence's info string
 *    "tests": [{"input": "...", "output": "..."}, ...]}   input optional (""), output required
 *
 * Outputs compare line by line after trailing whitespace (space, tab, CR) is removed from
 * every line and trailing empty lines are dropped; the run must also exit with status 0
 * without being killed or truncated.  The limits are the R1_CODE_* constants below (the
 * recipe's reward config has no code fields); docs/rewards.md ("code") lists them. */
#include "stages/rewards/rewards.h"

#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "stages/rewards/sandbox.h"

#define R1_CODE_MAX_BYTES (64u << 10) /* a longer code block scores 0 */
#define R1_CODE_MAX_TESTS 64          /* tests past the first 64 are ignored */
#define R1_CODE_BUDGET_S 30.0         /* all runs of one completion; later tests fail */
#define R1_CODE_CPU_S 2.0             /* per test run */
#define R1_CODE_WALL_S 5.0
#define R1_CODE_AS (256u << 20)
#define R1_CODE_FSIZE (1u << 20)
#define R1_CODE_PROCS 8
#define R1_CODE_OUTPUT (64u << 10)
#define R1_CODE_CC_CPU_S 10.0 /* the C compiler (cc1, as, ld) */
#define R1_CODE_CC_WALL_S 20.0
#define R1_CODE_CC_AS (1024u << 20)
#define R1_CODE_CC_FSIZE (16u << 20)
#define R1_CODE_CC_PROCS 16

enum lang { LANG_NONE = 0, LANG_PYTHON, LANG_C };

static enum lang lang_of(const char *s, size_t n)
{
    char w[16];
    if (n == 0 || n >= sizeof(w))
        return LANG_NONE;
    for (size_t i = 0; i < n; i++)
        w[i] = (char)(s[i] >= 'A' && s[i] <= 'Z' ? s[i] + 32 : s[i]);
    w[n] = '\0';
    if (!strcmp(w, "python") || !strcmp(w, "py") || !strcmp(w, "python3") || !strcmp(w, "py3"))
        return LANG_PYTHON;
    if (!strcmp(w, "c"))
        return LANG_C;
    return LANG_NONE;
}

struct block {
    size_t begin, end;           /* content, [begin, end) */
    size_t info_begin, info_end; /* the first word after the opening fence */
    bool found;
};

static bool is_blank(char c)
{
    return c == ' ' || c == '\t' || c == '\r';
}

/* The last closed fenced block in s[from, n): a fence is a line of (after blanks) 3 or
 * more backticks; it closes with a line of at least as many backticks and only blanks.
 * Linear: every line is looked at once. */
static struct block last_block(const char *s, size_t from, size_t n)
{
    struct block last = {0}, cur = {0};
    size_t fence = 0; /* backticks of the open fence, 0 outside a block */
    size_t line = from;
    while (line < n) {
        const char *nl = memchr(s + line, '\n', n - line);
        size_t eol = nl ? (size_t)(nl - s) : n, next = nl ? eol + 1 : n;
        size_t i = line;
        while (i < eol && is_blank(s[i]))
            i++;
        size_t ticks = 0;
        while (i + ticks < eol && s[i + ticks] == '`')
            ticks++;
        size_t rest = i + ticks;
        if (fence == 0 && ticks >= 3) {
            fence = ticks;
            while (rest < eol && is_blank(s[rest]))
                rest++;
            cur.info_begin = rest;
            while (rest < eol && !is_blank(s[rest]) && s[rest] != '{')
                rest++;
            cur.info_end = rest;
            cur.begin = next;
        } else if (fence && ticks >= fence) {
            while (rest < eol && is_blank(s[rest]))
                rest++;
            if (rest == eol) {
                cur.end = line;
                cur.found = true;
                last = cur;
                fence = 0;
            }
        }
        line = next;
    }
    return last;
}

/* s[0, n) with trailing blanks cut from every line and trailing empty lines dropped,
 * into a malloc'd buffer (*len bytes). */
static char *normalize(const char *s, size_t n, size_t *len)
{
    char *o = malloc(n + 1);
    if (!o)
        return NULL;
    size_t k = 0, line = 0;
    while (line <= n) {
        const char *nl = line < n ? memchr(s + line, '\n', n - line) : NULL;
        size_t eol = nl ? (size_t)(nl - s) : n, e = eol;
        while (e > line && is_blank(s[e - 1]))
            e--;
        memcpy(o + k, s + line, e - line);
        k += e - line;
        if (!nl)
            break;
        o[k++] = '\n';
        line = eol + 1;
    }
    while (k > 0 && o[k - 1] == '\n')
        k--;
    o[k] = '\0';
    *len = k;
    return o;
}

static bool output_matches(const struct r1_sandbox_result *r, const char *want)
{
    if (r->timed_out || r->output_truncated || r->signal || r->exit_status != 0)
        return false;
    size_t a_len, b_len;
    char *a = normalize(r->out, r->out_len, &a_len);
    char *b = normalize(want, strlen(want), &b_len);
    bool eq = a && b && a_len == b_len && memcmp(a, b, a_len) == 0;
    free(a);
    free(b);
    return eq;
}

static double now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

/* Checks meta.tests: an array of objects with a string "output" and an optional string
 * "input"; returns how many to run (0 when malformed or empty). */
static size_t tests_ok(const json_t *tests)
{
    if (!json_is_array(tests))
        return 0;
    size_t n = json_array_size(tests);
    for (size_t i = 0; i < n; i++) {
        const json_t *t = json_array_get(tests, i);
        const json_t *in = json_object_get(t, "input");
        if (!json_is_object(t) || !json_is_string(json_object_get(t, "output")) ||
            (in && !json_is_string(in)))
            return 0;
    }
    return n < R1_CODE_MAX_TESTS ? n : R1_CODE_MAX_TESTS;
}

/* Score of code (language lang) on the first n tests, run in a fresh work dir. */
static double run_tests(enum lang lang, const char *code, size_t code_len, const json_t *tests,
                        size_t n)
{
    char *dir = NULL;
    if (r1_sandbox_dir_create(&dir) != 0)
        return 0.0;
    double t0 = now_s();
    size_t passed = 0;
    const char *py_argv[] = {"python3", "-I", "-S", "prog.py", NULL};
    const char *c_argv[] = {"./prog", NULL};
    const char *const *argv = lang == LANG_PYTHON ? py_argv : c_argv;
    struct r1_sandbox_result res;
    if (r1_sandbox_write_file(dir, lang == LANG_PYTHON ? "prog.py" : "prog.c", code, code_len))
        goto out;
    if (lang == LANG_C) {
        const char *cc_argv[] = {"cc", "-O1", "-std=c11", "-o", "prog", "prog.c", "-lm", NULL};
        struct r1_sandbox_limits cl = {R1_CODE_CC_CPU_S, R1_CODE_CC_WALL_S,
                                       R1_CODE_CC_AS,    R1_CODE_CC_FSIZE,
                                       R1_CODE_CC_PROCS, 0,
                                       R1_CODE_OUTPUT,   0};
        if (r1_sandbox_run(cc_argv, NULL, 0, dir, &cl, &res) != 0)
            goto out;
        bool built = !res.timed_out && !res.signal && res.exit_status == 0;
        r1_sandbox_result_release(&res);
        if (!built)
            goto out;
    }
    struct r1_sandbox_limits lim = {R1_CODE_CPU_S,  R1_CODE_WALL_S,
                                    R1_CODE_AS,     R1_CODE_FSIZE,
                                    R1_CODE_PROCS,  0,
                                    R1_CODE_OUTPUT, 0};
    for (size_t i = 0; i < n; i++) {
        double left = R1_CODE_BUDGET_S - (now_s() - t0);
        if (left < 0.05)
            break;
        if (lim.wall_seconds > left)
            lim.wall_seconds = left;
        const json_t *t = json_array_get(tests, i);
        const json_t *in = json_object_get(t, "input");
        const char *input = in ? json_string_value(in) : "";
        size_t input_len = in ? json_string_length(in) : 0;
        if (r1_sandbox_run(argv, input, input_len, dir, &lim, &res) != 0)
            break;
        if (output_matches(&res, json_string_value(json_object_get(t, "output"))))
            passed++;
        r1_sandbox_result_release(&res);
    }
out:
    r1_sandbox_dir_remove(dir);
    free(dir);
    return (double)passed / (double)n;
}

double r1_reward_code(const struct r1_reward_input *in, const struct r1_reward_cfg *cfg)
{
    (void)cfg;
    if (!in || !json_is_object(in->meta))
        return 0.0;
    const json_t *tests = json_object_get(in->meta, "tests");
    size_t n = tests_ok(tests);
    if (n == 0)
        return 0.0;
    const json_t *jl = json_object_get(in->meta, "language");
    if (jl && !json_is_string(jl))
        return 0.0;
    char *s = r1_reward_effective_completion(in);
    if (!s)
        return 0.0;
    size_t len = strlen(s), pos = 0, from = 0;
    struct r1_reward_seg seg;
    while (r1_reward_next_seg(s, len, &pos, &seg))
        if (seg.kind == R1_SEG_THINK)
            from = pos; /* code inside the thinking does not count */
    struct block b = last_block(s, from, len);
    enum lang lang = jl ? lang_of(json_string_value(jl), json_string_length(jl))
                        : lang_of(s + b.info_begin, b.info_end - b.info_begin);
    double r = 0.0;
    if (b.found && lang != LANG_NONE && b.end - b.begin <= R1_CODE_MAX_BYTES)
        r = run_tests(lang, s + b.begin, b.end - b.begin, tests, n);
    free(s);
    return r;
}
