/* sample.c - next-token sampling from one row of logits (see sample.h).
 *
 * Pipeline (Hugging Face generate() order: temperature, top-k, top-p, min-p):
 *   w_i = exp((x_i - max x) / T)          weights relative to the best token (in (0, 1])
 *   top-k  keep the k best tokens
 *   top-p  over the kept tokens, renormalised: keep the smallest best-first prefix
 *          whose mass is >= top_p (at least one token)
 *   min-p  keep tokens with w_i >= min_p * w_max (a ratio, so renormalising between
 *          the steps does not change it)
 *   draw   target = u * (sum of kept w); the chosen token is the first whose running
 *          sum exceeds the target.
 * "Best first" is a total order: larger logit first, lower id on equal logits; for
 * T > 0 it is the order of the probabilities (ties by id) without being spoiled by
 * two logits rounding to the same float probability.  NaN logits sort last.
 *
 * Speed (V up to ~150k, once per generated token; nothing here allocates):
 *   greedy        one argmax pass (+ one exp pass when the logprob is asked for)
 *   no top-k/p    one exp pass, and the draw walks ids 0..V-1 in id order.  With only
 *                 min-p on, dropped tokens get weight 0 and the draw also walks in id
 *                 order: the distribution is the one described above, only which u
 *                 maps to which token differs from the best-first walk.
 *   top-k         a size-k heap over the raw logits (no exp for the other V - k
 *                 tokens), heapsort of the k survivors: O(V log k) worst case.
 *   top-p alone   one exp pass; the candidates with p >= c are gathered,
 *                 c = (1 - top_p)/16, /256, ... until their mass reaches top_p (they
 *                 are a best-first prefix, so the nucleus lies inside them; at most
 *                 1/c qualify; c <= (1 - top_p)/V always suffices).  The nucleus and
 *                 then the drawn token are found by weighted quickselect (expected
 *                 O(n), no sort); the result is the best-first walk's, up to the
 *                 rounding of sums taken in another order.
 * exp is a libm-free polynomial (exp_neg below) so the pass vectorises.
 *
 * Greedy: r1_sample_probs gives the one-hot at the argmax (that is what is drawn
 * from); the logprob is the log-softmax of the raw logits, as sample.h says.
 * Order note: this is transformers' _get_logits_processor order; vLLM's V1 sampler
 * applies min-p before top-k/top-p.  Min-p commutes with top-k (a ratio to the
 * max, which top-k keeps) but not with top-p.
 *
 * Logits must be finite or -inf (masked tokens), at least one finite; otherwise the
 * greedy choice is returned and the logprob is NaN.  Sums are accumulated in double. */
#include "core/sample.h"

#include <assert.h>
#include <float.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "core/err.h"

int r1_sample_scratch_init(struct r1_sample_scratch *s, int V)
{
    s->V = 0;
    s->prob = NULL;
    s->idx = NULL;
    if (V <= 0)
        return r1_err_set(R1_EINVAL, "sample scratch: vocabulary size %d must be > 0", V);
    s->prob = malloc(sizeof(float) * (size_t)V);
    s->idx = malloc(sizeof(int32_t) * (size_t)V);
    if (!s->prob || !s->idx) {
        r1_sample_scratch_release(s);
        return r1_err_set(R1_ENOMEM, "sample scratch: cannot allocate buffers for %d tokens", V);
    }
    s->V = V;
    return 0;
}

void r1_sample_scratch_release(struct r1_sample_scratch *s)
{
    if (!s)
        return;
    free(s->prob);
    free(s->idx);
    s->prob = NULL;
    s->idx = NULL;
    s->V = 0;
}

int r1_sampling_check(const struct r1_sampling *s)
{
    if (!s)
        return r1_err_set(R1_EINVAL, "sampling: no settings given");
    if (!isfinite(s->temperature) || s->temperature < 0)
        return r1_err_set(R1_EINVAL,
                          "sampling: temperature %g is invalid; use a finite value >= 0 "
                          "(0 = greedy)",
                          (double)s->temperature);
    if (s->top_k < 0)
        return r1_err_set(R1_EINVAL, "sampling: top_k %d is invalid; use an integer >= 0 (0 = off)",
                          s->top_k);
    if (!(s->top_p > 0 && s->top_p <= 1))
        return r1_err_set(R1_EINVAL, "sampling: top_p %g is invalid; use a value in (0, 1] (1 = off)",
                          (double)s->top_p);
    if (!(s->min_p >= 0 && s->min_p < 1))
        return r1_err_set(R1_EINVAL, "sampling: min_p %g is invalid; use a value in [0, 1) (0 = off)",
                          (double)s->min_p);
    return 0;
}

/* exp(x) for x <= 0 (all weights here are relative to the max), without libm so
 * that it vectorises and does not depend on the platform's libm.  Cephes expf
 * scheme: x = k ln2 + r, |r| <= ln2/2, degree-7 polynomial for e^r, times 2^k.
 * Relative error < 1e-7 against exp(); x < -87 (incl. -inf) gives exactly 0.
 * exp_neg4 is the same arithmetic on four lanes (GCC/Clang vector extensions;
 * the only typedefs in the file, which vector types need). */
static inline float exp_neg(float x)
{
    float xc = x < -87.0f ? -87.0f : x;
    float k = (xc * 1.44269504088896341f + 12582912.0f) - 12582912.0f; /* round(x / ln2) */
    float r = xc - k * 0.693359375f;
    r = r - k * -2.12194440e-4f;
    float p = 1.9875691500e-4f;
    p = p * r + 1.3981999507e-3f;
    p = p * r + 8.3334519073e-3f;
    p = p * r + 4.1665795894e-2f;
    p = p * r + 1.6666665459e-1f;
    p = p * r + 5.0000001201e-1f;
    float y = p * (r * r) + r + 1.0f;
    uint32_t bits = (uint32_t)((int32_t)k + 127) << 23;
    float scale;
    memcpy(&scale, &bits, sizeof(scale));
    y *= scale;
    return x < -87.0f ? 0.0f : y;
}

#if defined(__GNUC__) || defined(__clang__)
typedef float v4f __attribute__((vector_size(16)));
typedef int32_t v4i __attribute__((vector_size(16)));

static inline v4f exp_neg4(v4f x)
{
    const v4f lo = {-87.0f, -87.0f, -87.0f, -87.0f};
    v4i small = x < lo; /* all ones where x < -87 */
    v4f xc = (v4f)(((v4i)lo & small) | ((v4i)x & ~small));
    v4f k = (xc * 1.44269504088896341f + 12582912.0f) - 12582912.0f;
    v4f r = xc - k * 0.693359375f;
    r = r - k * -2.12194440e-4f;
    v4f p = r * 1.9875691500e-4f + 1.3981999507e-3f;
    p = p * r + 8.3334519073e-3f;
    p = p * r + 4.1665795894e-2f;
    p = p * r + 1.6666665459e-1f;
    p = p * r + 5.0000001201e-1f;
    v4f y = p * (r * r) + r + 1.0f;
    v4i bits = (__builtin_convertvector(k, v4i) + 127) << 23;
    y *= (v4f)bits;
    return (v4f)((v4i)y & ~small);
}
#endif

/* w[i] = exp((x[i] - m) * inv_t) for i in [0, n). */
static void exp_weights(const float *x, float *w, int n, float m, float inv_t)
{
    int i = 0;
#if defined(__GNUC__) || defined(__clang__)
    for (; i + 4 <= n; i += 4) {
        v4f v;
        memcpy(&v, x + i, sizeof(v));
        v = exp_neg4((v - m) * inv_t);
        memcpy(w + i, &v, sizeof(v));
    }
#endif
    for (; i < n; i++)
        w[i] = exp_neg((x[i] - m) * inv_t);
}

/* Sum of w[0..n) in double with four interleaved accumulators (fixed order, so
 * deterministic, and not bound by the latency of one add chain). */
static double sum_weights(const float *w, int n)
{
    double s0 = 0, s1 = 0, s2 = 0, s3 = 0;
    int i = 0;
    for (; i + 4 <= n; i += 4) {
        s0 += w[i];
        s1 += w[i + 1];
        s2 += w[i + 2];
        s3 += w[i + 3];
    }
    for (; i < n; i++)
        s0 += w[i];
    return (s0 + s1) + (s2 + s3);
}

/* Sum of w[ids[j]] for j in [0, n), in double. */
static double sum_weights_at(const float *w, const int32_t *ids, int n)
{
    double s = 0;
    for (int j = 0; j < n; j++)
        s += w[ids[j]];
    return s;
}

/* ---- ordering: a before b when a is the more probable token (ties by id, NaN last) ---- */

static inline int tok_before(const float *x, int32_t a, int32_t b)
{
    float xa = x[a], xb = x[b];
    if (xa > xb)
        return 1;
    if (xa < xb)
        return 0;
    if (xa == xb)
        return a < b;
    int na = isnan(xa), nb = isnan(xb);
    if (na != nb)
        return nb;
    return a < b;
}

/* Heap whose root is the token that comes last in the order. */
static void heap_sift(const float *x, int32_t *h, int n, int i)
{
    int32_t v = h[i];
    for (;;) {
        int c = 2 * i + 1;
        if (c >= n)
            break;
        if (c + 1 < n && tok_before(x, h[c], h[c + 1]))
            c++;
        if (!tok_before(x, v, h[c]))
            break;
        h[i] = h[c];
        i = c;
    }
    h[i] = v;
}

/* Heap-ordered h[0..n) -> sorted best first. */
static void heap_drain(const float *x, int32_t *h, int n)
{
    for (int end = n - 1; end > 0; end--) {
        int32_t t = h[0];
        h[0] = h[end];
        h[end] = t;
        heap_sift(x, h, end, 0);
    }
}

static void heap_sort(const float *x, int32_t *a, int n)
{
    for (int i = n / 2 - 1; i >= 0; i--)
        heap_sift(x, a, n, i);
    heap_drain(x, a, n);
}

static void insertion_sort(const float *x, int32_t *a, int n)
{
    for (int i = 1; i < n; i++) {
        int32_t v = a[i];
        int j = i;
        while (j > 0 && tok_before(x, v, a[j - 1])) {
            a[j] = a[j - 1];
            j--;
        }
        a[j] = v;
    }
}

static inline void swap_id(int32_t *a, int i, int j)
{
    int32_t t = a[i];
    a[i] = a[j];
    a[j] = t;
}

/* Partitions a[0..n), n > 16, around a median-of-three pivot p (Hoare scheme; the
 * order is total, so no two keys are equal).  Returns i with a[0..i) before or equal
 * to p and a[i..n) after or equal to p, both parts non-empty. */
static int partition(const float *x, int32_t *a, int n)
{
    int mid = n / 2, last = n - 1;
    if (tok_before(x, a[mid], a[0]))
        swap_id(a, mid, 0);
    if (tok_before(x, a[last], a[mid])) {
        swap_id(a, last, mid);
        if (tok_before(x, a[mid], a[0]))
            swap_id(a, mid, 0);
    }
    int32_t p = a[mid]; /* a[0] <= p <= a[last]: both scans stop inside the range */
    int i = 0, j = last;
    for (;;) {
        do
            i++;
        while (tok_before(x, a[i], p));
        do
            j--;
        while (tok_before(x, p, a[j]));
        if (i >= j)
            return i;
        swap_id(a, i, j);
    }
}

static int log2_floor(int n)
{
    int d = 0;
    while (n > 1) {
        n >>= 1;
        d++;
    }
    return d;
}

/* Weighted selection without a full sort.  Walking a[0..n) best first and summing
 * w, finds the first position whose running sum reaches target (inclusive: >=,
 * top-p) or passes it (!inclusive: >, the draw).  Reorders a so that a[0..j] holds
 * exactly the tokens up to that position, a[j] the one at it, and returns j; -1
 * when the total never gets there (u >= 1, or rounding).  Quickselect, expected
 * O(n); past 2 log2(n) + 4 rounds the remaining range is heap-sorted instead. */
static int weighted_select(const float *x, const float *w, int32_t *a, int n, double target,
                           int inclusive)
{
    int lo = 0, hi = n, rounds = 2 * log2_floor(n) + 4;
    double acc = 0;
    while (hi - lo > 16 && rounds-- > 0) {
        int i = lo + partition(x, a + lo, hi - lo);
        double reach = acc;
        for (int j = lo; j < i; j++)
            reach += w[a[j]];
        if (inclusive ? reach >= target : reach > target) {
            hi = i;
        } else {
            acc = reach;
            lo = i;
        }
    }
    if (hi - lo > 16)
        heap_sort(x, a + lo, hi - lo);
    else
        insertion_sort(x, a + lo, hi - lo);
    for (int j = lo; j < hi; j++) {
        acc += w[a[j]];
        if (inclusive ? acc >= target : acc > target)
            return j;
    }
    return -1;
}

/* The k best tokens of x (V), sorted best first, into h[0..k). */
static void select_top_k(const float *x, int V, int k, int32_t *h)
{
    for (int i = 0; i < k; i++)
        h[i] = i;
    for (int i = k / 2 - 1; i >= 0; i--)
        heap_sift(x, h, k, i);
    float worst = x[h[0]];
    for (int i = k; i < V; i++) {
        float xi = x[i];
        /* Later ids never win a tie, so only a strictly larger logit (or a heap root
         * that is NaN) can displace the root. */
        if (!(xi > worst) && !isnan(worst))
            continue;
        if (!tok_before(x, i, h[0]))
            continue;
        h[0] = i;
        heap_sift(x, h, k, 0);
        worst = x[h[0]];
    }
    heap_drain(x, h, k);
}

/* ---- the pipeline ---- */

/* Where the kept tokens are after prepare(); weights in scr->prob[id]:
 *   KEPT_ALL     every id 0..V-1, walked in id order (weight 0 when dropped);
 *   KEPT_SORTED  scr->idx[0..n), best first (top-k path);
 *   KEPT_SET     scr->idx[0..n) in no particular order (top-p path): the draw
 *                finds its best-first position by weighted selection.
 * sum is the sum of the kept weights. */
enum { KEPT_ALL, KEPT_SORTED, KEPT_SET };

struct kept {
    int mode;
    int n;
    double sum;
};

static float inv_temperature(float T)
{
    double inv = 1.0 / (double)T;
    return inv > FLT_MAX ? FLT_MAX : (float)inv; /* tiny T: 0 * inv must stay 0 */
}

static int argmax(const float *x, int V, float *max)
{
    int best = 0;
    float m = -INFINITY;
    for (int i = 0; i < V; i++)
        if (x[i] > m) {
            m = x[i];
            best = i;
        }
    *max = m;
    return best;
}

static void prepare(const float *x, int V, const struct r1_sampling *s, float m,
                    struct r1_sample_scratch *scr, struct kept *out)
{
    float *w = scr->prob;
    int32_t *idx = scr->idx;
    float inv_t = inv_temperature(s->temperature);
    int top_k_on = s->top_k > 0 && s->top_k < V;
    int top_p_on = s->top_p < 1;
    int min_p_on = s->min_p > 0;
    /* The best token has weight exactly 1 (exp of 0), so min-p's bar is min_p itself. */
    float bar = s->min_p;

    if (!top_k_on && !top_p_on) {
        exp_weights(x, w, V, m, inv_t);
        if (min_p_on)
            for (int i = 0; i < V; i++)
                w[i] = w[i] >= bar ? w[i] : 0.0f;
        out->mode = KEPT_ALL;
        out->n = V;
        out->sum = sum_weights(w, V);
        return;
    }

    int n;
    if (top_k_on) {
        n = s->top_k;
        select_top_k(x, V, n, idx);
        double total = 0;
        for (int j = 0; j < n; j++) {
            int32_t id = idx[j];
            w[id] = exp_neg((x[id] - m) * inv_t);
            total += w[id];
        }
        if (top_p_on) {
            double want = (double)s->top_p * total, acc = 0;
            for (int j = 0; j < n; j++) {
                acc += w[idx[j]];
                if (acc >= want) {
                    n = j + 1;
                    break;
                }
            }
        }
        if (min_p_on) {
            int j = 1;
            while (j < n && w[idx[j]] >= bar)
                j++;
            n = j;
        }
        double sum = 0;
        for (int j = 0; j < n; j++)
            sum += w[idx[j]];
        out->mode = KEPT_SORTED;
        out->n = n;
        out->sum = sum;
        return;
    }

    /* Top-p without top-k: gather a best-first prefix that holds the nucleus, then
     * find the nucleus inside it by weighted selection. */
    exp_weights(x, w, V, m, inv_t);
    double total = sum_weights(w, V);
    double rest = 1.0 - (double)s->top_p, want = (double)s->top_p * total;
    for (double c = rest / 16;; c /= 16) {
        int last = c * V <= rest; /* excluded mass < V * c <= rest: enough */
        float cut = (float)(c * total);
        double mass = 0;
        n = 0;
        for (int i = 0; i < V; i++)
            if (w[i] >= cut) {
                idx[n++] = i;
                mass += w[i];
            }
        if (last || mass >= want)
            break;
    }
    int j = weighted_select(x, w, idx, n, want, 1);
    if (j >= 0)
        n = j + 1;
    if (min_p_on) {
        int kept = 0;
        for (int i = 0; i < n; i++)
            if (w[idx[i]] >= bar)
                idx[kept++] = idx[i];
        n = kept;
    }
    out->mode = KEPT_SET;
    out->n = n;
    out->sum = sum_weights_at(w, idx, n);
}

int32_t r1_sample_token(const float *logits, int V, const struct r1_sampling *s, float u,
                        float *logprob, struct r1_sample_scratch *scr)
{
    assert(logits && s && scr && V > 0 && scr->V >= V);
    float m;
    int best = argmax(logits, V, &m);

    if (s->temperature <= 0 || !isfinite(m)) {
        if (logprob) {
            if (!isfinite(m)) {
                *logprob = NAN;
            } else {
                exp_weights(logits, scr->prob, V, m, 1.0f);
                *logprob = (float)-log(sum_weights(scr->prob, V));
            }
        }
        return best;
    }

    struct kept k;
    prepare(logits, V, s, m, scr, &k);
    const float *w = scr->prob;
    int32_t *idx = scr->idx;
    double target = (double)u * k.sum, acc = 0;
    int32_t pick = -1, last_id = -1;
    if (k.mode == KEPT_ALL) {
        for (int i = 0; i < V; i++) {
            if (w[i] <= 0)
                continue;
            acc += w[i];
            last_id = i;
            if (acc > target) {
                pick = i;
                break;
            }
        }
    } else if (k.mode == KEPT_SORTED) {
        for (int j = 0; j < k.n; j++) {
            int32_t id = idx[j];
            if (w[id] <= 0)
                continue;
            acc += w[id];
            last_id = id;
            if (acc > target) {
                pick = id;
                break;
            }
        }
    } else {
        int j = weighted_select(logits, w, idx, k.n, target, 0);
        if (j >= 0) {
            pick = idx[j];
        } else {
            for (int i = 0; i < k.n; i++) /* the last kept token with positive weight */
                if (w[idx[i]] > 0 && (last_id < 0 || tok_before(logits, last_id, idx[i])))
                    last_id = idx[i];
        }
    }
    if (pick < 0) /* u >= 1 or rounding: the last token with positive weight */
        pick = last_id >= 0 ? last_id : best;
    if (logprob)
        *logprob = (float)(log((double)w[pick]) - log(k.sum));
    return pick;
}

void r1_sample_probs(const float *logits, int V, const struct r1_sampling *s, float *probs,
                     struct r1_sample_scratch *scr)
{
    assert(logits && s && probs && scr && V > 0 && scr->V >= V);
    float m;
    int best = argmax(logits, V, &m);
    for (int i = 0; i < V; i++)
        probs[i] = 0.0f;
    if (s->temperature <= 0 || !isfinite(m)) {
        probs[best] = 1.0f;
        return;
    }
    struct kept k;
    prepare(logits, V, s, m, scr, &k);
    const float *w = scr->prob;
    if (k.mode == KEPT_ALL) {
        for (int i = 0; i < V; i++)
            probs[i] = (float)(w[i] / k.sum);
    } else {
        for (int j = 0; j < k.n; j++)
            probs[scr->idx[j]] = (float)(w[scr->idx[j]] / k.sum);
    }
}
