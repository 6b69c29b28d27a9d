/* shaping.c - length and repetition shaping (open-r1): the cosine-scaled length reward
 * and the word n-gram repetition penalty.
 *
 * Repetition counts distinct n-grams exactly in O(W log n) for W words: words are
 * interned to ids (hash table, byte comparison), then the id of the n-gram at each
 * position is built by doubling, interning pairs of ids of shorter grams (a 2k-gram is
 * the pair of two k-grams), so two n-grams get the same id exactly when they are equal. */
#include "stages/rewards/rewards.h"

#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

double r1_reward_length_cosine(const struct r1_reward_input *in, const struct r1_reward_cfg *cfg)
{
    bool correct = r1_reward_accuracy(in, cfg) >= 1.0;
    double progress = 1.0; /* no limit: every length is at the limit */
    if (in && in->max_completion_tokens > 0) {
        progress = (double)in->completion_tokens / (double)in->max_completion_tokens;
        progress = progress < 0.0 ? 0.0 : progress > 1.0 ? 1.0 : progress;
    }
    /* open-r1: wrong answers swap min and max, so a longer wrong answer costs less */
    double lo = correct ? 0.5 : -0.5, hi = correct ? 1.0 : -1.0;
    return lo + 0.5 * (hi - lo) * (1.0 + cos(progress * M_PI));
}

static bool is_space(char c)
{
    return c == ' ' || c == '\t' || c == '\n' || c == '\r' || c == '\v' || c == '\f';
}

static char lower(char c)
{
    return (c >= 'A' && c <= 'Z') ? (char)(c - 'A' + 'a') : c;
}

static uint64_t mix64(uint64_t x)
{
    x ^= x >> 33;
    x *= 0xff51afd7ed558ccdull;
    x ^= x >> 33;
    x *= 0xc4ceb9fe1a85ec53ull;
    x ^= x >> 33;
    return x;
}

/* An open-addressing table from 64-bit keys to dense ids (0, 1, ...). */
struct idtab {
    uint64_t *key;
    uint32_t *id; /* UINT32_MAX: empty */
    size_t mask;
    uint32_t n;
};

static bool idtab_init(struct idtab *t, size_t items)
{
    size_t cap = 16;
    while (cap < 2 * items)
        cap *= 2;
    t->key = malloc(cap * sizeof(*t->key));
    t->id = malloc(cap * sizeof(*t->id));
    t->mask = cap - 1;
    t->n = 0;
    if (t->id)
        memset(t->id, 0xff, cap * sizeof(*t->id));
    return t->key && t->id;
}

static void idtab_clear(struct idtab *t)
{
    memset(t->id, 0xff, (t->mask + 1) * sizeof(*t->id));
    t->n = 0;
}

static void idtab_release(struct idtab *t)
{
    free(t->key);
    free(t->id);
}

/* The id of a pair of ids. */
static uint32_t idtab_pair(struct idtab *t, uint32_t a, uint32_t b)
{
    uint64_t k = ((uint64_t)a << 32) | b;
    for (size_t i = mix64(k) & t->mask;; i = (i + 1) & t->mask) {
        if (t->id[i] == UINT32_MAX) {
            t->key[i] = k;
            return t->id[i] = t->n++;
        }
        if (t->key[i] == k)
            return t->id[i];
    }
}

struct words {
    const char *s;
    size_t *off, *len;
    size_t n;
};

static bool word_eq(const struct words *w, size_t a, size_t b)
{
    if (w->len[a] != w->len[b])
        return false;
    for (size_t k = 0; k < w->len[a]; k++)
        if (lower(w->s[w->off[a] + k]) != lower(w->s[w->off[b] + k]))
            return false;
    return true;
}

/* Word ids into ids[], equal for words equal after ASCII lower-casing; the table's key
 * holds a word index there. */
static void word_ids(const struct words *w, struct idtab *t, uint32_t *ids)
{
    for (size_t i = 0; i < w->n; i++) {
        uint64_t h = 1469598103934665603ull;
        for (size_t k = 0; k < w->len[i]; k++)
            h = (h ^ (unsigned char)lower(w->s[w->off[i] + k])) * 1099511628211ull;
        for (size_t j = mix64(h) & t->mask;; j = (j + 1) & t->mask) {
            if (t->id[j] == UINT32_MAX) {
                t->key[j] = i;
                ids[i] = t->id[j] = t->n++;
                break;
            }
            if (word_eq(w, (size_t)t->key[j], i)) {
                ids[i] = t->id[j];
                break;
            }
        }
    }
}

/* Distinct n-grams among the n_words - n + 1 of the text; SIZE_MAX on allocation failure. */
static size_t distinct_ngrams(const struct words *w, size_t n)
{
    size_t W = w->n, distinct = SIZE_MAX;
    uint32_t *pw = malloc(W * sizeof(*pw)), *res = malloc(W * sizeof(*res));
    struct idtab t;
    if (!idtab_init(&t, W) || !pw || !res)
        goto out;
    word_ids(w, &t, pw);
    size_t p = 1, r = 0; /* gram lengths held in pw and res (r == 0: none yet) */
    size_t pw_distinct = t.n, res_distinct = 0;
    for (size_t k = n;;) {
        if (k & 1) {
            if (r == 0) {
                memcpy(res, pw, (W - p + 1) * sizeof(*res));
                res_distinct = pw_distinct;
            } else {
                idtab_clear(&t);
                for (size_t i = 0; i + r + p <= W; i++)
                    res[i] = idtab_pair(&t, res[i], pw[i + r]);
                res_distinct = t.n;
            }
            r += p;
        }
        k >>= 1;
        if (k == 0)
            break;
        idtab_clear(&t);
        for (size_t i = 0; i + 2 * p <= W; i++)
            pw[i] = idtab_pair(&t, pw[i], pw[i + p]);
        pw_distinct = t.n;
        p *= 2;
    }
    distinct = res_distinct;
out:
    idtab_release(&t);
    free(pw);
    free(res);
    return distinct;
}

double r1_reward_repetition(const struct r1_reward_input *in, const struct r1_reward_cfg *cfg)
{
    int64_t ngram = cfg ? cfg->ngram : 3;
    double max_penalty = cfg ? cfg->max_penalty : -1.0;
    const char *s = in && in->completion ? in->completion : "";
    if (ngram < 1 || !isfinite(max_penalty))
        return 0.0;
    struct words w = {s, NULL, NULL, 0};
    for (size_t i = 0; s[i];) { /* count the words */
        while (is_space(s[i]))
            i++;
        if (!s[i])
            break;
        w.n++;
        while (s[i] && !is_space(s[i]))
            i++;
    }
    if (w.n < (uint64_t)ngram || w.n >= UINT32_MAX)
        return 0.0;
    w.off = malloc(w.n * sizeof(*w.off));
    w.len = malloc(w.n * sizeof(*w.len));
    double reward = 0.0;
    if (w.off && w.len) {
        size_t k = 0;
        for (size_t i = 0; s[i];) {
            while (is_space(s[i]))
                i++;
            if (!s[i])
                break;
            w.off[k] = i;
            while (s[i] && !is_space(s[i]))
                i++;
            w.len[k] = i - w.off[k];
            k++;
        }
        size_t total = w.n - (size_t)ngram + 1;
        size_t distinct = distinct_ngrams(&w, (size_t)ngram);
        if (distinct != SIZE_MAX)
            reward = (1.0 - (double)distinct / (double)total) * max_penalty;
    }
    free(w.off);
    free(w.len);
    return reward;
}
