/* countdown.c - TinyZero's countdown reward: the equation in the last <answer> block
 * (outside the thinking) must use meta.numbers exactly once each and evaluate to
 * meta.target.  1 when it does, 0.1 for an answer block holding anything else, 0 without
 * a non-empty answer block or with malformed meta.
 *
 * The evaluator is a recursive-descent parser over integers, + - * /, unary - and +,
 * parentheses and ASCII space; values are exact rationals (int64 numerator and
 * denominator, reduced, every operation overflow-checked).  Division by zero, overflow,
 * any other character, nesting deeper than MAX_DEPTH or an equation longer than MAX_LEN
 * bytes make the equation invalid. */
#include "stages/rewards/rewards.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#define MAX_LEN 256  /* bytes of the (trimmed) equation */
#define MAX_DEPTH 64 /* nested parentheses and unary signs */
#define MAX_LITS (MAX_LEN / 2 + 1)

struct q {
    int64_t n, d; /* d > 0, gcd(|n|, d) == 1 */
};

struct calc {
    const char *p, *end;
    int depth;
    bool bad;
    int64_t lits[MAX_LITS];
    int n_lits;
};

static int64_t gcd64(int64_t a, int64_t b)
{
    if (a < 0)
        a = -a;
    while (b) {
        int64_t t = a % b;
        a = b;
        b = t;
    }
    return a;
}

/* n/d reduced with d > 0; false on overflow or d == 0. */
static bool q_make(int64_t n, int64_t d, struct q *out)
{
    if (d == 0 || d == INT64_MIN || n == INT64_MIN)
        return false;
    if (d < 0) {
        n = -n;
        d = -d;
    }
    int64_t g = gcd64(n, d);
    if (g > 1) {
        n /= g;
        d /= g;
    }
    *out = (struct q){n, d};
    return true;
}

static bool q_op(struct q a, char op, struct q b, struct q *out)
{
    int64_t x, y, z;
    switch (op) {
    case '+':
    case '-':
        if (op == '-') {
            if (b.n == INT64_MIN)
                return false;
            b.n = -b.n;
        }
        if (__builtin_mul_overflow(a.n, b.d, &x) || __builtin_mul_overflow(b.n, a.d, &y) ||
            __builtin_add_overflow(x, y, &z) || __builtin_mul_overflow(a.d, b.d, &x))
            return false;
        return q_make(z, x, out);
    case '*':
        if (__builtin_mul_overflow(a.n, b.n, &x) || __builtin_mul_overflow(a.d, b.d, &y))
            return false;
        return q_make(x, y, out);
    case '/':
        if (b.n == 0 || __builtin_mul_overflow(a.n, b.d, &x) ||
            __builtin_mul_overflow(a.d, b.n, &y))
            return false;
        return q_make(x, y, out);
    }
    return false;
}

static void skip_space(struct calc *c)
{
    while (c->p < c->end && (*c->p == ' ' || *c->p == '\t' || *c->p == '\n' || *c->p == '\r'))
        c->p++;
}

static struct q parse_expr(struct calc *c);

static struct q parse_unary(struct calc *c)
{
    struct q zero = {0, 1}, v = zero;
    skip_space(c);
    if (c->bad || c->p >= c->end || ++c->depth > MAX_DEPTH) {
        c->bad = true;
        return zero;
    }
    char ch = *c->p;
    if (ch == '-' || ch == '+') {
        c->p++;
        v = parse_unary(c);
        if (ch == '-' && !c->bad)
            c->bad = !q_op(zero, '-', v, &v);
    } else if (ch == '(') {
        c->p++;
        v = parse_expr(c);
        skip_space(c);
        if (c->p < c->end && *c->p == ')')
            c->p++;
        else
            c->bad = true;
    } else if (ch >= '0' && ch <= '9') {
        int64_t n = 0;
        while (c->p < c->end && *c->p >= '0' && *c->p <= '9') {
            if (__builtin_mul_overflow(n, 10, &n) || __builtin_add_overflow(n, *c->p - '0', &n))
                c->bad = true;
            c->p++;
        }
        if (c->n_lits == MAX_LITS)
            c->bad = true;
        else
            c->lits[c->n_lits++] = n;
        v = (struct q){n, 1};
    } else {
        c->bad = true;
    }
    c->depth--;
    return c->bad ? zero : v;
}

static struct q parse_term(struct calc *c)
{
    struct q v = parse_unary(c);
    for (;;) {
        skip_space(c);
        if (c->bad || c->p >= c->end || (*c->p != '*' && *c->p != '/'))
            return v;
        char op = *c->p++;
        struct q w = parse_unary(c);
        if (!c->bad && !q_op(v, op, w, &v))
            c->bad = true;
    }
}

static struct q parse_expr(struct calc *c)
{
    struct q v = parse_term(c);
    for (;;) {
        skip_space(c);
        if (c->bad || c->p >= c->end || (*c->p != '+' && *c->p != '-'))
            return v;
        char op = *c->p++;
        struct q w = parse_term(c);
        if (!c->bad && !q_op(v, op, w, &v))
            c->bad = true;
    }
}

static int cmp_i64(const void *a, const void *b)
{
    int64_t x = *(const int64_t *)a, y = *(const int64_t *)b;
    return (x > y) - (x < y);
}

/* Whether the equation s[0, n) is valid, uses exactly `numbers` and equals target. */
static bool solves(const char *s, size_t n, const json_t *numbers, json_int_t target)
{
    if (n > MAX_LEN)
        return false;
    struct calc *c = calloc(1, sizeof(*c));
    if (!c)
        return false;
    c->p = s;
    c->end = s + n;
    struct q v = parse_expr(c);
    skip_space(c);
    bool ok = !c->bad && c->p == c->end && v.d == 1 && v.n == target &&
              (size_t)c->n_lits == json_array_size(numbers);
    if (ok) {
        int64_t want[MAX_LITS];
        for (int i = 0; i < c->n_lits; i++)
            want[i] = (int64_t)json_integer_value(json_array_get(numbers, (size_t)i));
        qsort(want, (size_t)c->n_lits, sizeof(want[0]), cmp_i64);
        qsort(c->lits, (size_t)c->n_lits, sizeof(c->lits[0]), cmp_i64);
        ok = memcmp(want, c->lits, (size_t)c->n_lits * sizeof(want[0])) == 0;
    }
    free(c);
    return ok;
}

double r1_reward_countdown(const struct r1_reward_input *in, const struct r1_reward_cfg *cfg)
{
    (void)cfg;
    if (!in || !json_is_object(in->meta))
        return 0.0;
    const json_t *numbers = json_object_get(in->meta, "numbers");
    const json_t *target = json_object_get(in->meta, "target");
    if (!json_is_array(numbers) || json_array_size(numbers) == 0 || !json_is_integer(target))
        return 0.0;
    for (size_t i = 0; i < json_array_size(numbers); i++)
        if (!json_is_integer(json_array_get(numbers, i)))
            return 0.0;
    char *s = r1_reward_effective_completion(in);
    if (!s)
        return 0.0;
    struct r1_reward_seg seg;
    size_t pos = 0, b = 0, e = 0;
    bool found = false;
    size_t n = strlen(s);
    while (r1_reward_next_seg(s, n, &pos, &seg)) {
        if (seg.kind == R1_SEG_ANSWER) {
            b = seg.begin;
            e = seg.end;
            found = true;
        }
    }
    while (b < e && (s[b] == ' ' || s[b] == '\t' || s[b] == '\n' || s[b] == '\r'))
        b++;
    while (e > b && (s[e - 1] == ' ' || s[e - 1] == '\t' || s[e - 1] == '\n' || s[e - 1] == '\r'))
        e--;
    double r = 0.0;
    if (found && e > b)
        r = solves(s + b, e - b, numbers, json_integer_value(target)) ? 1.0 : 0.1;
    free(s);
    return r;
}
