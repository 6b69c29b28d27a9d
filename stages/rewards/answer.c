/* answer.c - final answers: extraction (<answer> blocks, \boxed{…}) outside the thinking,
 * equality of answer strings (exact rationals, else normalised text), and the accuracy
 * reward.
 *
 * Numbers are compared exactly: each side is parsed into sign * num / den with num and den
 * arbitrary-precision naturals (base 1e9 limbs, at most BIG_LIMBS of them), and a/b == c/d
 * is decided by a*d == c*b.  Literals longer than MAX_DIGITS digits are not numbers (they
 * compare as text).  Every scan is linear; wrapper stripping stops after MAX_WRAPPERS. */
#include "stages/rewards/rewards.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#define BIG_LIMBS 64 /* 576 decimal digits: room for products of MAX_DIGITS literals */
#define BIG_BASE 1000000000u
#define MAX_DIGITS 120   /* digits in one decimal literal */
#define MAX_NUMERIC 1024 /* longer normalised answers are not tried as numbers */
#define MAX_WRAPPERS 16  /* $…$, \boxed{…}, … peeled from one answer at most */

static bool is_space(char c)
{
    return c == ' ' || c == '\t' || c == '\n' || c == '\r' || c == '\v' || c == '\f';
}

static bool is_digit(char c)
{
    return c >= '0' && c <= '9';
}

static bool is_alpha(char c)
{
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z');
}

static bool starts(const char *p, const char *end, const char *lit)
{
    size_t n = strlen(lit);
    return (size_t)(end - p) >= n && memcmp(p, lit, n) == 0;
}

/* ---- \boxed{…}: one pass with a stack of open boxes ---- */

struct box_open {
    size_t content; /* offset just after the box's '{' */
    size_t plain;   /* plain '{' opened inside it and not yet closed */
    bool candidate; /* outside the thinking */
};

struct box_scan {
    struct box_open *stack;
    size_t n, cap;
    size_t base; /* plain '{' open below every box */
    bool found, failed;
    size_t begin, end; /* content of the box that closed last */
};

static void box_push(struct box_scan *b, size_t content, bool candidate)
{
    if (b->n == b->cap) {
        size_t cap = b->cap ? 2 * b->cap : 16;
        struct box_open *st = realloc(b->stack, cap * sizeof(*st));
        if (!st) {
            b->failed = true;
            return;
        }
        b->stack = st;
        b->cap = cap;
    }
    b->stack[b->n++] = (struct box_open){content, 0, candidate};
}

/* Feeds s[from, to); boxes opening here are candidates when `candidate`. */
static void box_feed(struct box_scan *b, const char *s, size_t from, size_t to, bool candidate)
{
    for (size_t i = from; i < to && !b->failed; i++) {
        char c = s[i];
        if (c == '\\') {
            if (i + 1 < to && (s[i + 1] == '{' || s[i + 1] == '}' || s[i + 1] == '\\')) {
                i++; /* \{ \} are literal braces, \\ a line break */
                continue;
            }
            if (starts(s + i, s + to, "\\boxed")) {
                size_t j = i + 6;
                while (j < to && s[j] == ' ')
                    j++;
                if (j < to && s[j] == '{') {
                    box_push(b, j + 1, candidate);
                    i = j;
                }
            }
        } else if (c == '{') {
            if (b->n)
                b->stack[b->n - 1].plain++;
            else
                b->base++;
        } else if (c == '}') {
            if (b->n == 0) {
                if (b->base)
                    b->base--;
            } else if (b->stack[b->n - 1].plain) {
                b->stack[b->n - 1].plain--;
            } else {
                struct box_open o = b->stack[--b->n];
                if (o.candidate) {
                    b->found = true;
                    b->begin = o.content;
                    b->end = i;
                }
            }
        }
    }
}

/* The last closed \boxed{} of s[from, to) (think tags not interpreted). */
static bool box_in_range(const char *s, size_t from, size_t to, size_t *begin, size_t *end,
                         bool *failed)
{
    struct box_scan b = {0};
    box_feed(&b, s, from, to, true);
    free(b.stack);
    *failed = b.failed;
    *begin = b.begin;
    *end = b.end;
    return b.found && !b.failed;
}

/* The last closed \boxed{} opening outside the thinking. */
static bool box_outside_think(const char *s, size_t n, size_t *begin, size_t *end, bool *failed)
{
    struct box_scan b = {0};
    struct r1_reward_seg seg;
    size_t pos = 0;
    while (!b.failed && r1_reward_next_seg(s, n, &pos, &seg))
        box_feed(&b, s, seg.begin, seg.end, seg.kind != R1_SEG_THINK);
    free(b.stack);
    *failed = b.failed;
    *begin = b.begin;
    *end = b.end;
    return b.found && !b.failed;
}

/* The first (last = false) or last closed answer block. */
static bool answer_block(const char *s, size_t n, bool last, size_t *begin, size_t *end)
{
    struct r1_reward_seg seg;
    size_t pos = 0;
    bool found = false;
    while (r1_reward_next_seg(s, n, &pos, &seg)) {
        if (seg.kind != R1_SEG_ANSWER)
            continue;
        *begin = seg.begin;
        *end = seg.end;
        found = true;
        if (!last)
            break;
    }
    return found;
}

bool r1_extract_answer(const char *completion, enum r1_answer_from from, char *out, size_t cap)
{
    if (out && cap)
        out[0] = '\0';
    if (!completion || !out || cap == 0)
        return false;
    size_t len = strlen(completion), b = 0, e = 0, bb, be;
    bool found = false, failed = false;
    switch (from) {
    case R1_ANSWER_TAG:
        found = answer_block(completion, len, false, &b, &e);
        break;
    case R1_ANSWER_TAG_LAST:
        found = answer_block(completion, len, true, &b, &e);
        break;
    case R1_ANSWER_BOXED:
        found = box_outside_think(completion, len, &b, &e, &failed);
        break;
    case R1_ANSWER_AUTO:
    default:
        if (answer_block(completion, len, false, &b, &e)) {
            found = true;
            if (box_in_range(completion, b, e, &bb, &be, &failed)) {
                b = bb;
                e = be;
            }
        } else {
            found = box_outside_think(completion, len, &b, &e, &failed);
        }
        break;
    }
    if (!found || failed)
        return false;
    while (b < e && is_space(completion[b]))
        b++;
    while (e > b && is_space(completion[e - 1]))
        e--;
    size_t n = e - b < cap - 1 ? e - b : cap - 1;
    memcpy(out, completion + b, n);
    out[n] = '\0';
    return true;
}

/* ---- normalisation ---- */

/* LaTeX spellings and look-alikes to their plain forms, in place; returns the length. */
static size_t rewrite(char *s, size_t n)
{
    const char *r = s, *end = s + n;
    char *w = s;
    while (r < end) {
        if (starts(r, end, "\xE2\x88\x92")) { /* U+2212 MINUS SIGN */
            *w++ = '-';
            r += 3;
        } else if (starts(r, end, "\\dfrac") || starts(r, end, "\\tfrac")) {
            memcpy(w, "\\frac", 5);
            w += 5;
            r += 6;
        } else if (starts(r, end, "\\left") && (r + 5 == end || !is_alpha(r[5]))) {
            r += 5;
        } else if (starts(r, end, "\\right") && (r + 6 == end || !is_alpha(r[6]))) {
            r += 6;
        } else if (starts(r, end, "{,}")) {
            *w++ = ',';
            r += 3;
        } else if (starts(r, end, "\\!")) {
            r += 2;
        } else if (starts(r, end, "\\,") || starts(r, end, "\\;") || starts(r, end, "\\:") ||
                   starts(r, end, "\\ ")) {
            *w++ = ' ';
            r += 2;
        } else if (starts(r, end, "\\%")) {
            *w++ = '%';
            r += 2;
        } else if (*r == '~') {
            *w++ = ' ';
            r++;
        } else {
            *w++ = *r++;
        }
    }
    return (size_t)(w - s);
}

/* Offset of the '}' matching the '{' at s[open], or SIZE_MAX. */
static size_t match_brace(const char *s, size_t open, size_t end)
{
    size_t depth = 0;
    for (size_t i = open; i < end; i++) {
        if (s[i] == '\\' && i + 1 < end) {
            i++;
        } else if (s[i] == '{') {
            depth++;
        } else if (s[i] == '}') {
            if (--depth == 0)
                return i;
        }
    }
    return SIZE_MAX;
}

/* Peels surrounding space, a trailing period, $…$, $$…$$, \(…\), \[…\] and whole-answer
 * \boxed{…}, \text{…}, \textbf{…}, \mathrm{…}, \mathbf{…} off s[*b, *e). */
static void strip_wrappers(const char *s, size_t *b, size_t *e)
{
    static const char *const macros[] = {"\\boxed", "\\textbf", "\\text", "\\mathrm", "\\mathbf"};
    static const char *const pairs[][2] = {
        {"$$", "$$"}, {"$", "$"}, {"\\(", "\\)"}, {"\\[", "\\]"}};
    for (int round = 0; round < MAX_WRAPPERS; round++) {
        while (*b < *e && is_space(s[*b]))
            (*b)++;
        while (*e > *b && is_space(s[*e - 1]))
            (*e)--;
        size_t len = *e - *b;
        const char *p = s + *b, *end = s + *e;
        if (len > 1 && p[len - 1] == '.') {
            (*e)--;
            continue;
        }
        bool peeled = false;
        for (size_t k = 0; k < sizeof(pairs) / sizeof(pairs[0]) && !peeled; k++) {
            size_t lo = strlen(pairs[k][0]), lc = strlen(pairs[k][1]);
            if (len >= lo + lc && starts(p, end, pairs[k][0]) &&
                memcmp(end - lc, pairs[k][1], lc) == 0) {
                *b += lo;
                *e -= lc;
                peeled = true;
            }
        }
        for (size_t k = 0; k < sizeof(macros) / sizeof(macros[0]) && !peeled; k++) {
            if (!starts(p, end, macros[k]))
                continue;
            size_t j = *b + strlen(macros[k]);
            while (j < *e && s[j] == ' ')
                j++;
            if (j < *e && s[j] == '{' && match_brace(s, j, *e) == *e - 1) {
                *b = j + 1;
                *e -= 1;
                peeled = true;
            }
        }
        if (!peeled)
            return;
    }
}

/* The comparable text of an answer: rewritten, unwrapped, ASCII lower case, runs of space
 * collapsed and dropped unless between two word characters.  malloc'd; NULL on failure. */
static char *normalise(const char *a, size_t *len)
{
    size_t n = strlen(a);
    char *buf = malloc(n + 1);
    if (!buf)
        return NULL;
    memcpy(buf, a, n);
    n = rewrite(buf, n);
    size_t b = 0, e = n;
    strip_wrappers(buf, &b, &e);
    size_t w = 0;
    bool pending = false; /* a space seen since the last kept character */
    for (size_t r = b; r < e; r++) {
        char c = buf[r];
        if (is_space(c)) {
            pending = w > 0;
            continue;
        }
        bool word = is_alpha(c) || is_digit(c) || (unsigned char)c >= 0x80;
        if (pending) {
            char prev = buf[w - 1];
            bool prev_word = is_alpha(prev) || is_digit(prev) || (unsigned char)prev >= 0x80;
            if (word && prev_word)
                buf[w++] = ' ';
            pending = false;
        }
        buf[w++] = (c >= 'A' && c <= 'Z') ? (char)(c - 'A' + 'a') : c;
    }
    buf[w] = '\0';
    *len = w;
    return buf;
}

/* ---- exact rationals ---- */

struct big {
    uint32_t d[BIG_LIMBS]; /* base 1e9, least significant first */
    int n;                 /* limbs in use; 0 is zero */
};

static bool big_mul_add(struct big *x, uint32_t m, uint32_t a)
{
    uint64_t carry = a;
    for (int i = 0; i < x->n; i++) {
        uint64_t v = (uint64_t)x->d[i] * m + carry;
        x->d[i] = (uint32_t)(v % BIG_BASE);
        carry = v / BIG_BASE;
    }
    if (carry) {
        if (x->n == BIG_LIMBS)
            return false;
        x->d[x->n++] = (uint32_t)carry;
    }
    while (x->n && x->d[x->n - 1] == 0)
        x->n--;
    return true;
}

static bool big_mul(const struct big *a, const struct big *b, struct big *out)
{
    uint64_t acc[2 * BIG_LIMBS + 1] = {0};
    if (a->n + b->n > BIG_LIMBS + 1)
        return false;
    for (int i = 0; i < a->n; i++) {
        uint64_t carry = 0;
        for (int j = 0; j < b->n; j++) {
            uint64_t v = acc[i + j] + (uint64_t)a->d[i] * b->d[j] + carry;
            acc[i + j] = v % BIG_BASE;
            carry = v / BIG_BASE;
        }
        for (int k = i + b->n; carry; k++) {
            uint64_t v = acc[k] + carry;
            acc[k] = v % BIG_BASE;
            carry = v / BIG_BASE;
        }
    }
    int n = a->n + b->n;
    while (n && acc[n - 1] == 0)
        n--;
    if (n > BIG_LIMBS)
        return false;
    out->n = n;
    for (int i = 0; i < n; i++)
        out->d[i] = (uint32_t)acc[i];
    return true;
}

static bool big_eq(const struct big *a, const struct big *b)
{
    return a->n == b->n && memcmp(a->d, b->d, (size_t)a->n * sizeof(a->d[0])) == 0;
}

struct rat {
    int sign; /* +1 or -1 */
    struct big num, den;
};

/* digits with optional thousands groups ("1,234"), then optional ".digits"; at least one
 * digit.  Returns the end, or NULL. */
static const char *parse_decimal(const char *p, const char *end, struct rat *r)
{
    r->sign = 1;
    r->num.n = 0;
    r->den.n = 1;
    r->den.d[0] = 1;
    int digits = 0, lead = 0;
    while (p < end && is_digit(*p)) {
        if (++digits > MAX_DIGITS || !big_mul_add(&r->num, 10, (uint32_t)(*p - '0')))
            return NULL;
        p++;
        lead++;
    }
    if (lead >= 1 && lead <= 3) {
        while (end - p >= 4 && p[0] == ',' && is_digit(p[1]) && is_digit(p[2]) && is_digit(p[3]) &&
               (end - p == 4 || !is_digit(p[4]))) {
            for (int k = 1; k <= 3; k++)
                if (++digits > MAX_DIGITS || !big_mul_add(&r->num, 10, (uint32_t)(p[k] - '0')))
                    return NULL;
            p += 4;
        }
    }
    if (p < end && *p == '.') {
        p++;
        while (p < end && is_digit(*p)) {
            if (++digits > MAX_DIGITS || !big_mul_add(&r->num, 10, (uint32_t)(*p - '0')) ||
                !big_mul_add(&r->den, 10, 0))
                return NULL;
            p++;
        }
    }
    return digits ? p : NULL;
}

static const char *parse_signed_decimal(const char *p, const char *end, struct rat *r)
{
    int sign = 1;
    if (p < end && (*p == '-' || *p == '+')) {
        sign = *p == '-' ? -1 : 1;
        p++;
    }
    p = parse_decimal(p, end, r);
    if (p)
        r->sign = sign;
    return p;
}

/* a / b into a; false when b is zero or on overflow. */
static bool rat_div(struct rat *a, const struct rat *b)
{
    struct big num, den;
    if (b->num.n == 0 || !big_mul(&a->num, &b->den, &num) || !big_mul(&a->den, &b->num, &den))
        return false;
    a->num = num;
    a->den = den;
    a->sign *= b->sign;
    return true;
}

/* An argument of \frac: {signed decimal} or one digit. */
static const char *parse_frac_arg(const char *p, const char *end, struct rat *r)
{
    if (p < end && is_digit(*p))
        return parse_decimal(p, p + 1, r);
    if (p >= end || *p != '{')
        return NULL;
    p = parse_signed_decimal(p + 1, end, r);
    return p && p < end && *p == '}' ? p + 1 : NULL;
}

/* The whole of s[0, n) as a number: [sign] (\frac A B | decimal [/ signed decimal]). */
static bool parse_number(const char *s, size_t n, struct rat *r)
{
    const char *p = s, *end = s + n;
    int sign = 1;
    if (p < end && (*p == '-' || *p == '+')) {
        sign = *p == '-' ? -1 : 1;
        p++;
    }
    if (starts(p, end, "\\frac")) {
        struct rat d;
        p = parse_frac_arg(p + 5, end, r);
        if (!p || !(p = parse_frac_arg(p, end, &d)) || !rat_div(r, &d))
            return false;
    } else {
        p = parse_decimal(p, end, r);
        if (p && p < end && *p == '/') {
            struct rat d;
            p = parse_signed_decimal(p + 1, end, &d);
            if (!p || !rat_div(r, &d))
                return false;
        }
    }
    if (!p || p != end)
        return false;
    r->sign *= sign;
    return true;
}

static bool rat_eq(const struct rat *a, const struct rat *b)
{
    if (a->num.n == 0 || b->num.n == 0)
        return a->num.n == 0 && b->num.n == 0;
    struct big x, y;
    if (a->sign != b->sign || !big_mul(&a->num, &b->den, &x) || !big_mul(&b->num, &a->den, &y))
        return false;
    return big_eq(&x, &y);
}

/* s without its spaces, parsed as a number. */
static bool as_number(const char *s, size_t n, struct rat *r)
{
    char buf[MAX_NUMERIC];
    size_t k = 0;
    for (size_t i = 0; i < n; i++) {
        if (s[i] == ' ')
            continue;
        if (k == sizeof(buf))
            return false;
        buf[k++] = s[i];
    }
    return parse_number(buf, k, r);
}

bool r1_answers_equal(const char *a, const char *b)
{
    if (!a || !b)
        return false;
    size_t na, nb;
    char *x = normalise(a, &na), *y = x ? normalise(b, &nb) : NULL;
    bool eq = false;
    if (x && y && na && nb) {
        struct rat ra, rb;
        bool numa = as_number(x, na, &ra), numb = as_number(y, nb, &rb);
        if (numa && numb)
            eq = rat_eq(&ra, &rb);
        else if (!numa && !numb)
            eq = na == nb && memcmp(x, y, na) == 0;
    }
    free(x);
    free(y);
    return eq;
}

/* ---- the reward ---- */

double r1_reward_accuracy(const struct r1_reward_input *in, const struct r1_reward_cfg *cfg)
{
    if (!in || !in->answer || !in->answer[0])
        return 0.0;
    enum r1_answer_from from = cfg ? cfg->answer : R1_ANSWER_AUTO;
    char *text = r1_reward_effective_completion(in);
    if (!text)
        return 0.0;
    size_t cap = strlen(text) + 1;
    char *ans = malloc(cap);
    bool ok = ans && r1_extract_answer(text, from, ans, cap) && ans[0] &&
              r1_answers_equal(ans, in->answer);
    free(ans);
    free(text);
    return ok ? 1.0 : 0.0;
}
