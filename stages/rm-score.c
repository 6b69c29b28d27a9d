/* rm-score.c - what a reward model is apart from its training: the Bradley-Terry loss,
 * the encoding of one (prompt, response) text and the scorer the align stage uses (see
 * reward_model.h).  A batch of texts is (rows, T) host rows, T the longest text,
 * right-padded (segment -1, position 0); the score is read at each text's last token. */
#include "stages/reward_model.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/err.h"
#include "stages/data/prompts.h"

/* ---- the loss ----------------------------------------------------------------------- */

double r1_rm_bt_loss(int n, const float *rc, const float *rr, float margin, double denom,
                     float *drc, float *drr)
{
    double sum = 0;
    for (int i = 0; i < n; i++) {
        double x = (double)rc[i] - (double)rr[i] - (double)margin;
        /* -log σ(x) = softplus(-x); σ(-x) without overflow on either side */
        double e = exp(-fabs(x));
        sum += (x < 0 ? -x : 0.0) + log1p(e);
        double sig_neg = x >= 0 ? e / (1.0 + e) : 1.0 / (1.0 + e);
        if (drc)
            drc[i] = (float)(-sig_neg / denom);
        if (drr)
            drr[i] = (float)(sig_neg / denom);
    }
    return sum / denom;
}

double r1_rm_bce_loss(int n, const float *s, const int8_t *y, double denom, float *ds)
{
    double sum = 0;
    for (int i = 0; i < n; i++) {
        double x = (double)s[i], t = y[i] ? 1.0 : 0.0;
        double m = y[i] ? x : -x; /* the loss is softplus(-m) */
        double e = exp(-fabs(m));
        sum += (m < 0 ? -m : 0.0) + log1p(e);
        double sig = x >= 0 ? 1.0 / (1.0 + exp(-x)) : exp(x) / (1.0 + exp(x));
        if (ds)
            ds[i] = (float)((sig - t) / denom);
    }
    return sum / denom;
}

static int cmp_score(const void *a, const void *b)
{
    float x = *(const float *)a, z = *(const float *)b;
    return (x > z) - (x < z);
}

double r1_rm_auc(int64_t n, const float *s, const int8_t *y)
{
    /* Mann-Whitney: sort the (score, label) pairs, rank them (ties share the mean rank),
     * AUC = (Σ ranks of positives - P(P+1)/2) / (P·N) */
    struct sl {
        float s;
        int8_t y;
    } *v = malloc((size_t)(n > 0 ? n : 1) * sizeof(*v));
    if (!v)
        return NAN;
    int64_t pos = 0;
    for (int64_t i = 0; i < n; i++) {
        v[i].s = s[i];
        v[i].y = y[i];
        pos += y[i] != 0;
    }
    int64_t neg = n - pos;
    if (pos == 0 || neg == 0) {
        free(v);
        return 0.5;
    }
    qsort(v, (size_t)n, sizeof(*v), cmp_score); /* the score is the struct's first member */
    double rank_sum = 0;
    for (int64_t i = 0; i < n;) {
        int64_t j = i;
        while (j < n && v[j].s == v[i].s)
            j++;
        double mean_rank = (double)(i + 1 + j) / 2.0; /* ranks i+1 .. j */
        for (int64_t k = i; k < j; k++)
            if (v[k].y)
                rank_sum += mean_rank;
        i = j;
    }
    free(v);
    return (rank_sum - (double)pos * (double)(pos + 1) / 2.0) / ((double)pos * (double)neg);
}

/* ---- encoding ----------------------------------------------------------------------- */

int r1_rm_encode(const struct r1_tokenizer *tok, const char *template_, const char *prompt,
                 const char *response, int32_t eos, int max_len, int32_t **ids, int *n)
{
    *ids = NULL;
    *n = 0;
    if (max_len < 1)
        return r1_err_set(R1_EINVAL, "reward model: max_len %d must be at least 1", max_len);
    char *text = r1_prompt_template_apply(template_, prompt);
    if (!text)
        return r1_err_code() ? r1_err_code() : R1_ENOMEM;
    int32_t *p = NULL, *r = NULL;
    int np = 0, nr = 0;
    int rc = r1_tokenizer_encode(tok, text, strlen(text), &p, &np);
    free(text);
    if (!rc)
        rc = r1_tokenizer_encode(tok, response, strlen(response), &r, &nr);
    int total = np + nr + (eos >= 0);
    if (!rc && total == 0)
        rc = r1_err_set(R1_EINVAL, "reward model: an empty prompt and response with no EOS "
                                   "token leave nothing to score");
    int keep = total < max_len ? total : max_len, drop = total - keep;
    int32_t *out = rc ? NULL : malloc((size_t)(keep > 0 ? keep : 1) * sizeof(int32_t));
    if (!rc && !out)
        rc = r1_err_set(R1_ENOMEM, "reward model: out of memory encoding %d tokens", total);
    if (!rc) { /* the last keep tokens of prompt ++ response ++ eos */
        int k = 0;
        for (int i = drop; i < np; i++)
            out[k++] = p[i];
        for (int i = drop > np ? drop - np : 0; i < nr; i++)
            out[k++] = r[i];
        if (eos >= 0 && drop <= np + nr)
            out[k++] = eos;
        *ids = out;
        *n = k;
    }
    free(p);
    free(r);
    return rc;
}

int r1_rm_fill_rows(int rows, const int32_t *const *ids, const int *len, int32_t pad,
                     int32_t *tokens, int32_t *pos, int32_t *seg, int32_t *last)
{
    int T = 1;
    for (int r = 0; r < rows; r++)
        T = len[r] > T ? len[r] : T;
    for (int r = 0; r < rows; r++) {
        int32_t *tk = tokens + (size_t)r * T, *ps = pos + (size_t)r * T, *sg = seg + (size_t)r * T;
        for (int t = 0; t < T; t++) {
            int real = t < len[r];
            tk[t] = real ? ids[r][t] : pad;
            ps[t] = real ? t : 0;
            sg[t] = real ? 0 : -1;
        }
        last[r] = len[r] - 1;
    }
    return T;
}

/* ---- the scorer --------------------------------------------------------------------- */

struct r1_rm_scorer {
    struct r1_model *m;
    const struct r1_tokenizer *tok;
    char *template_;
    int max_len;
    int32_t *tokens, *pos, *seg; /* (R1_RM_SCORER_ROWS, max_len) */
    int32_t last[R1_RM_SCORER_ROWS];
};

int r1_rm_scorer_create(struct r1_rm_scorer **out, struct r1_model *m,
                        const struct r1_tokenizer *tok, const char *template_, int max_len)
{
    *out = NULL;
    if (!r1_model_has_score_head(m))
        return r1_err_set(R1_EINVAL, "reward scorer: the model has no score head; use a "
                                     "directory saved by a reward_model stage");
    if (max_len < 1 || max_len > m->cfg.max_seq_len)
        return r1_err_set(R1_EINVAL,
                          "reward scorer: max_len %d is not in [1, %d] (the model's "
                          "max_seq_len)",
                          max_len, m->cfg.max_seq_len);
    if (template_) { /* a bad template is an error now, not at the first score */
        char *t = r1_prompt_template_apply(template_, "");
        if (!t)
            return r1_err_code() ? r1_err_code() : R1_ENOMEM;
        free(t);
    }
    struct r1_rm_scorer *s = calloc(1, sizeof(*s));
    size_t n = (size_t)R1_RM_SCORER_ROWS * max_len;
    int rc = 0;
    if (s) {
        s->m = m;
        s->tok = tok;
        s->max_len = max_len;
        s->template_ = template_ ? strdup(template_) : NULL;
        s->tokens = malloc(n * sizeof(int32_t));
        s->pos = malloc(n * sizeof(int32_t));
        s->seg = malloc(n * sizeof(int32_t));
    }
    if (!s || (template_ && !s->template_) || !s->tokens || !s->pos || !s->seg)
        rc = r1_err_set(R1_ENOMEM, "reward scorer: out of memory");
    if (!rc)
        rc = r1_model_reserve(m, R1_RM_SCORER_ROWS, max_len);
    if (rc) {
        r1_rm_scorer_free(s);
        return rc;
    }
    *out = s;
    return 0;
}

void r1_rm_scorer_free(struct r1_rm_scorer *s)
{
    if (!s)
        return;
    free(s->template_);
    free(s->tokens);
    free(s->pos);
    free(s->seg);
    free(s);
}

int r1_rm_scorer_score(struct r1_rm_scorer *s, int n, const char *const *prompts,
                       const char *const *responses, float *scores)
{
    int32_t *ids[R1_RM_SCORER_ROWS] = {0};
    int len[R1_RM_SCORER_ROWS];
    int rc = r1_model_reserve(s->m, R1_RM_SCORER_ROWS, s->max_len); /* another user may grow it */
    int32_t pad = s->m->cfg.pad_id >= 0 ? s->m->cfg.pad_id : 0;
    for (int i0 = 0; i0 < n && !rc; i0 += R1_RM_SCORER_ROWS) {
        int rows = n - i0 < R1_RM_SCORER_ROWS ? n - i0 : R1_RM_SCORER_ROWS;
        for (int r = 0; r < rows && !rc; r++)
            rc = r1_rm_encode(s->tok, s->template_, prompts[i0 + r], responses[i0 + r],
                              s->m->cfg.eos_id, s->max_len, &ids[r], &len[r]);
        if (!rc) {
            int T = r1_rm_fill_rows(rows, (const int32_t *const *)ids, len, pad, s->tokens,
                                    s->pos, s->seg, s->last);
            struct r1_batch b = {rows, T, s->tokens, s->pos, s->seg, NULL};
            rc = r1_model_score_forward(s->m, &b, s->last, scores + i0);
        }
        for (int r = 0; r < rows; r++) {
            free(ids[r]);
            ids[r] = NULL;
        }
    }
    return rc;
}

