/* reward_model.c - the reward_model stage: preference pairs, the trainer and the stage
 * interface (see reward_model.h; the loss, encoding and scorer are in rm-score.c).
 *
 * Pairs live as token arrays: text 2i is pair i's chosen encoding, text 2i+1 its
 * rejected one, all in one buffer (off, len per text).  A micro-batch of P pairs is
 * (2P, T) host rows, T the longest of its texts; padding has segment -1 and position 0.
 * Host buffers are sized once for (2·micro_batch_size, seq_len): the step loop does not
 * allocate. */
#include "stages/reward_model.h"

#include <inttypes.h>
#include <jansson.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/err.h"
#include "core/file.h"
#include "core/hfdir.h"
#include "core/rng.h"
#include "core/sha256.h"
#include "stages/data/gen.h"
#include "stages/data/prompts.h"

/* ---- pairs -------------------------------------------------------------------------- */

struct rm_pairs {
    int64_t n;     /* items: pairs, or labelled texts (pointwise) */
    int per;       /* texts per item: 2 (chosen, rejected) or 1 (pointwise) */
    int32_t *toks; /* every text's tokens */
    int64_t *off;  /* (per·n) start of text k in toks */
    int32_t *len;  /* (per·n) */
    int8_t *label; /* pointwise: (n) 1 safe, 0 unsafe */
    int64_t n_toks, cap_toks, cap_texts, cap_labels;
    char sha256[65];
};

static void pairs_free(struct rm_pairs *p)
{
    if (!p)
        return;
    free(p->toks);
    free(p->off);
    free(p->len);
    free(p->label);
    free(p);
}

struct pair_builder {
    struct rm_pairs *p;
    int64_t texts; /* texts pushed */
    const struct r1_tokenizer *tok;
    const char *template_;
    int32_t eos;
    int max_len;
};

static int builder_add_text(struct pair_builder *b, const char *prompt, const char *response)
{
    struct rm_pairs *p = b->p;
    if (b->texts + 1 > p->cap_texts) {
        int64_t cap = p->cap_texts ? 2 * p->cap_texts : 1024;
        int64_t *o = realloc(p->off, (size_t)cap * sizeof(int64_t));
        if (o)
            p->off = o;
        int32_t *l = realloc(p->len, (size_t)cap * sizeof(int32_t));
        if (l)
            p->len = l;
        if (!o || !l)
            return r1_err_set(R1_ENOMEM, "reward model: out of memory (%lld texts)",
                              (long long)cap);
        p->cap_texts = cap;
    }
    int32_t *ids = NULL;
    int n = 0;
    int rc = r1_rm_encode(b->tok, b->template_, prompt, response, b->eos, b->max_len, &ids, &n);
    if (rc)
        return rc;
    if (p->n_toks + n > p->cap_toks) {
        int64_t cap = p->cap_toks ? p->cap_toks : 65536;
        while (cap < p->n_toks + n)
            cap *= 2;
        int32_t *t = realloc(p->toks, (size_t)cap * sizeof(int32_t));
        if (!t) {
            free(ids);
            return r1_err_set(R1_ENOMEM, "reward model: out of memory (%lld tokens)",
                              (long long)cap);
        }
        p->toks = t;
        p->cap_toks = cap;
    }
    memcpy(p->toks + p->n_toks, ids, (size_t)n * sizeof(int32_t));
    free(ids);
    p->off[b->texts] = p->n_toks;
    p->len[b->texts] = n;
    p->n_toks += n;
    b->texts++;
    return 0;
}

static int builder_add_pair(struct pair_builder *b, const char *prompt, const char *chosen,
                            const char *rejected)
{
    int rc = builder_add_text(b, prompt, chosen);
    if (!rc)
        rc = builder_add_text(b, prompt, rejected);
    if (!rc)
        b->p->n++;
    return rc;
}

static int builder_add_point(struct pair_builder *b, const char *prompt, const char *response,
                             int label)
{
    struct rm_pairs *p = b->p;
    if (p->n + 1 > p->cap_labels) {
        int64_t cap = p->cap_labels ? 2 * p->cap_labels : 1024;
        int8_t *l = realloc(p->label, (size_t)cap);
        if (!l)
            return r1_err_set(R1_ENOMEM, "reward model: out of memory (%lld labels)",
                              (long long)cap);
        p->label = l;
        p->cap_labels = cap;
    }
    int rc = builder_add_text(b, prompt, response);
    if (!rc)
        p->label[p->n++] = (int8_t)label;
    return rc;
}

static const char *field_str(json_t *o, const char *key)
{
    return json_string_value(json_object_get(o, key));
}

/* A label value: "safe"/"unsafe", true/false, 1/0 -> 1/0; -1 for anything else. */
static int parse_label(json_t *v)
{
    if (json_is_string(v)) {
        const char *t = json_string_value(v);
        return strcmp(t, "safe") == 0 ? 1 : strcmp(t, "unsafe") == 0 ? 0 : -1;
    }
    if (json_is_boolean(v))
        return json_is_true(v) ? 1 : 0;
    if (json_is_integer(v) && (json_integer_value(v) == 0 || json_integer_value(v) == 1))
        return (int)json_integer_value(v);
    return -1;
}

/* Walks the pairs of JSONL file sp->path: each one goes to b, or (b NULL) is only
 * checked.  *sha256 (may be NULL) gets the file's hash.  R1_EINVAL naming file and line
 * for a bad line or a missing field, and for a file without pairs. */
static int scan_jsonl(struct pair_builder *b, const struct r1_rm_data_spec *sp, char *sha256)
{
    char *data = NULL;
    size_t len = 0;
    int rc = r1_file_read(sp->path, &data, &len);
    if (rc)
        return rc;
    if (sha256 && (rc = r1_sha256_bytes(sha256, data, len))) {
        free(data);
        return rc;
    }
    const char *pf = sp->prompt_field ? sp->prompt_field : "prompt";
    const char *cf = sp->chosen_field ? sp->chosen_field : "chosen";
    const char *rf = sp->rejected_field ? sp->rejected_field : "rejected";
    if (sp->pointwise) { /* (prompt, response, label): the two fields that name the texts */
        cf = sp->response_field ? sp->response_field : "response";
        rf = sp->label_field ? sp->label_field : "label";
    }
    int lineno = 0;
    int64_t pairs = 0;
    for (char *p = data, *end = data + len; p < end && !rc;) {
        char *nl = memchr(p, '\n', (size_t)(end - p));
        char *le = nl ? nl : end;
        lineno++;
        size_t ll = (size_t)(le - p);
        size_t blank = 0;
        while (blank < ll && (p[blank] == ' ' || p[blank] == '\t' || p[blank] == '\r'))
            blank++;
        if (blank < ll) {
            json_error_t e;
            json_t *o = json_loadb(p, ll, 0, &e);
            const char *pr = o ? field_str(o, pf) : NULL, *ch = o ? field_str(o, cf) : NULL;
            const char *rj = o ? field_str(o, rf) : NULL;
            int label = sp->pointwise && o ? parse_label(json_object_get(o, rf)) : -1;
            if (sp->pointwise)
                rj = label >= 0 ? "" : NULL;
            if (!o || !json_is_object(o))
                rc = r1_err_set(R1_EINVAL,
                                "%s:%d: not a JSON object (%s); each line must be one "
                                "object with '%s', '%s' and '%s'",
                                sp->path, lineno, o ? "wrong type" : e.text, pf, cf, rf);
            else if (sp->pointwise && pr && ch && !rj)
                rc = r1_err_set(R1_EINVAL,
                                "%s:%d: '%s' must be \"safe\" or \"unsafe\" (or true/false, "
                                "1/0); reward_model.label_field names it", sp->path, lineno, rf);
            else if (!pr || !ch || !rj)
                rc = r1_err_set(R1_EINVAL,
                                "%s:%d: string field '%s' is missing; each line needs "
                                "'%s', '%s' and '%s' (data.prompt_field, %s)",
                                sp->path, lineno,
                                !pr   ? pf
                                : !ch ? cf
                                      : rf,
                                pf, cf, rf,
                                sp->pointwise ? "reward_model.response_field, label_field"
                                              : "reward_model.chosen_field, rejected_field");
            else if (b)
                rc = sp->pointwise ? builder_add_point(b, pr, ch, label)
                                   : builder_add_pair(b, pr, ch, rj);
            pairs++;
            json_decref(o);
        }
        p = le + 1;
    }
    free(data);
    if (!rc && pairs == 0)
        rc = r1_err_set(R1_EINVAL, "%s: no %s; add lines with '%s', '%s' and '%s'", sp->path,
                        sp->pointwise ? "labelled responses" : "preference pairs", pf, cf, rf);
    return rc;
}

static int load_jsonl(struct pair_builder *b, const struct r1_rm_data_spec *sp)
{
    return scan_jsonl(b, sp, b->p->sha256);
}

static int load_generated(struct pair_builder *b, const struct r1_rm_data_spec *sp)
{
    struct r1_datagen *g = NULL;
    int rc = r1_datagen_parse(&g, sp->generator);
    if (rc)
        return rc;
    for (int64_t i = 0; i < sp->gen_n && !rc; i++) {
        json_t *o = NULL;
        if ((rc = r1_datagen_example(g, sp->gen_seed, (enum r1_split)sp->split, i, &o)))
            break;
        const char *pr = field_str(o, "prompt"), *ch = field_str(o, "chosen");
        const char *rj = field_str(o, "rejected");
        if (sp->pointwise) {
            const char *resp = field_str(o, "response");
            int label = parse_label(json_object_get(o, "label"));
            if (!pr || !resp || label < 0)
                rc = r1_err_set(R1_EINVAL,
                                "generator '%s' makes no labelled responses (no "
                                "\"response\"/\"label\"); use a safety generator",
                                sp->generator);
            else
                rc = builder_add_point(b, pr, resp, label);
        } else if (!pr || !ch || !rj)
            rc = r1_err_set(R1_EINVAL,
                            "generator '%s' makes no preference pairs (no "
                            "\"chosen\"/\"rejected\"); use a prefs generator",
                            sp->generator);
        else
            rc = builder_add_pair(b, pr, ch, rj);
        json_decref(o);
    }
    r1_datagen_free(g);
    if (rc)
        return rc;
    char src[512];
    int k = snprintf(src, sizeof(src), "generator:%s;seed=%llu;split=%s;n=%lld", sp->generator,
                     (unsigned long long)sp->gen_seed, r1_split_name((enum r1_split)sp->split),
                     (long long)sp->gen_n);
    if (k < 0 || (size_t)k >= sizeof(src))
        return r1_err_set(R1_EINVAL, "generator spec '%.60s...' is too long", sp->generator);
    return r1_sha256_bytes(b->p->sha256, src, (size_t)k);
}

/* Loads and encodes the pairs of sp; *out NULL when sp names no source. */
static int pairs_load(struct rm_pairs **out, const struct r1_rm_data_spec *sp,
                      const struct r1_tokenizer *tok, const char *template_, int32_t eos,
                      int max_len)
{
    *out = NULL;
    if (!sp->path && !sp->generator)
        return 0;
    struct rm_pairs *p = calloc(1, sizeof(*p));
    if (!p)
        return r1_err_set(R1_ENOMEM, "reward model: out of memory");
    p->per = sp->pointwise ? 1 : 2;
    struct pair_builder b = {p, 0, tok, template_, eos, max_len};
    int rc = sp->path ? load_jsonl(&b, sp) : load_generated(&b, sp);
    if (rc) {
        pairs_free(p);
        return rc;
    }
    *out = p;
    return 0;
}

/* ---- the trainer -------------------------------------------------------------------- */

struct r1_rm_stage {
    struct r1_rm_config cfg;
    struct r1_model *m;
    const struct r1_tokenizer *tok; /* borrowed; its files go into every checkpoint */
    struct r1_optim *opt;
    struct rm_pairs *train, *eval;
    int64_t *order;        /* (train->n) this epoch's pair order */
    int64_t epoch, cursor; /* data position: next pair is order[cursor] of epoch */
    int32_t pad;
    /* one micro-batch on the host: (2·micro_batch_size, seq_len) */
    int32_t *tokens, *pos, *seg, *last;
    float *scores, *dscores, *rc, *rr, *drc, *drr; /* (2·mbs) and (mbs) */
    int8_t *yb;          /* pointwise: (mbs) labels of the micro-batch */
    int64_t *batch;      /* (batch_size) pair indices of the current step */
    const int32_t **ids; /* (2·mbs) row texts */
    int *lens;           /* (2·mbs) */
};

static void make_order(struct r1_rm_stage *s)
{
    for (int64_t i = 0; i < s->train->n; i++)
        s->order[i] = i;
    struct r1_rng r = r1_rng_make(s->cfg.seed, R1_STREAM_DATA + (uint64_t)s->epoch);
    r1_rng_shuffle(&r, s->order, s->train->n);
}

int r1_rm_stage_create(struct r1_rm_stage **out, struct r1_model *m, const struct r1_tokenizer *tok,
                       const struct r1_rm_config *cfg)
{
    *out = NULL;
    if ((cfg->steps <= 0 && cfg->epochs <= 0) || cfg->batch_size <= 0 ||
        cfg->micro_batch_size <= 0 || cfg->batch_size % cfg->micro_batch_size != 0 ||
        cfg->seq_len < 1)
        return r1_err_set(R1_EINVAL,
                          "reward_model stage: steps or epochs, batch_size (%d), "
                          "micro_batch_size (%d) and seq_len (%d) must be positive and "
                          "micro_batch_size must divide batch_size",
                          cfg->batch_size, cfg->micro_batch_size, cfg->seq_len);
    if (!r1_model_has_score_head(m))
        return r1_err_set(R1_EINVAL, "reward_model stage: the model has no score head");
    if (cfg->seq_len > m->cfg.max_seq_len)
        return r1_err_set(R1_EINVAL,
                          "reward_model stage: seq_len %d exceeds the model's "
                          "max_seq_len %d; lower seq_len",
                          cfg->seq_len, m->cfg.max_seq_len);
    struct r1_rm_stage *s = calloc(1, sizeof(*s));
    if (!s)
        return r1_err_set(R1_ENOMEM, "reward_model stage: out of memory");
    s->cfg = *cfg;
    s->m = m;
    s->tok = tok;
    s->pad = m->cfg.pad_id >= 0 ? m->cfg.pad_id : 0;
    int rows = (cfg->pointwise ? 1 : 2) * cfg->micro_batch_size, P = cfg->micro_batch_size;
    size_t n = (size_t)rows * cfg->seq_len;
    int rc;
    if ((rc = pairs_load(&s->train, &cfg->train, tok, cfg->template_, m->cfg.eos_id,
                         cfg->seq_len)) ||
        (rc = pairs_load(&s->eval, &cfg->eval, tok, cfg->template_, m->cfg.eos_id, cfg->seq_len)))
        goto fail;
    if (!s->train) {
        rc = r1_err_set(R1_EINVAL, "reward_model stage: no training pairs; set data.path or "
                                   "data.generator");
        goto fail;
    }
    if (s->cfg.steps <= 0)
        s->cfg.steps = (cfg->epochs * s->train->n + cfg->batch_size - 1) / cfg->batch_size;
    if (s->cfg.optim.total_steps <= 0)
        s->cfg.optim.total_steps = s->cfg.steps;
    if ((rc = r1_model_reserve(m, rows, cfg->seq_len)) ||
        (rc = r1_optim_create(&s->opt, m, &s->cfg.optim)) ||
        (rc = r1_optim_join(s->opt, cfg->dist)))
        goto fail;
    s->order = malloc((size_t)s->train->n * sizeof(int64_t));
    s->tokens = malloc(n * sizeof(int32_t));
    s->pos = malloc(n * sizeof(int32_t));
    s->seg = malloc(n * sizeof(int32_t));
    s->last = malloc((size_t)rows * sizeof(int32_t));
    s->scores = malloc((size_t)rows * sizeof(float));
    s->dscores = malloc((size_t)rows * sizeof(float));
    s->rc = malloc((size_t)P * sizeof(float));
    s->rr = malloc((size_t)P * sizeof(float));
    s->drc = malloc((size_t)P * sizeof(float));
    s->drr = malloc((size_t)P * sizeof(float));
    s->yb = malloc((size_t)P);
    s->batch = malloc((size_t)cfg->batch_size * sizeof(int64_t));
    s->ids = malloc((size_t)rows * sizeof(*s->ids));
    s->lens = malloc((size_t)rows * sizeof(int));
    if (!s->order || !s->tokens || !s->pos || !s->seg || !s->last || !s->scores || !s->dscores ||
        !s->rc || !s->rr || !s->drc || !s->drr || !s->yb || !s->batch || !s->ids || !s->lens) {
        rc = r1_err_set(R1_ENOMEM, "reward_model stage: out of memory for a %zu-token batch", n);
        goto fail;
    }
    make_order(s);
    *out = s;
    return 0;
fail:
    r1_rm_stage_free(s);
    return rc;
}

void r1_rm_stage_free(struct r1_rm_stage *s)
{
    if (!s)
        return;
    r1_optim_free(s->opt);
    pairs_free(s->train);
    pairs_free(s->eval);
    free(s->order);
    free(s->tokens);
    free(s->pos);
    free(s->seg);
    free(s->last);
    free(s->scores);
    free(s->dscores);
    free(s->rc);
    free(s->rr);
    free(s->drc);
    free(s->drr);
    free(s->yb);
    free(s->batch);
    free(s->ids);
    free(s->lens);
    free(s);
}

int64_t r1_rm_stage_steps_done(const struct r1_rm_stage *s)
{
    return s->opt->step;
}
int64_t r1_rm_stage_steps_total(const struct r1_rm_stage *s)
{
    return s->cfg.steps;
}
const char *r1_rm_stage_data_sha256(const struct r1_rm_stage *s)
{
    return s->train->sha256;
}

/* Scores items idx[0..P) of set p in one forward of per·P rows: pairs into s->rc, s->rr
 * (P); pointwise texts into s->scores (P) with their labels in s->yb. */
static int score_pairs(struct r1_rm_stage *s, const struct rm_pairs *p, const int64_t *idx, int P)
{
    int per = p->per;
    for (int j = 0; j < P; j++)
        for (int k = 0; k < per; k++) {
            int64_t t = per * idx[j] + k;
            s->ids[per * j + k] = p->toks + p->off[t];
            s->lens[per * j + k] = p->len[t];
        }
    int T = r1_rm_fill_rows(per * P, s->ids, s->lens, s->pad, s->tokens, s->pos, s->seg, s->last);
    struct r1_batch b = {per * P, T, s->tokens, s->pos, s->seg, NULL};
    int rc = r1_model_score_forward(s->m, &b, s->last, s->scores);
    if (rc)
        return rc;
    for (int j = 0; j < P; j++) {
        if (per == 1) {
            s->yb[j] = p->label[idx[j]];
            continue;
        }
        s->rc[j] = s->scores[2 * j];
        s->rr[j] = s->scores[2 * j + 1];
    }
    return 0;
}

int r1_rm_stage_step(struct r1_rm_stage *s, struct r1_rm_metrics *out)
{
    const struct r1_rm_config *c = &s->cfg;
    int P = c->micro_batch_size, B = c->batch_size;
    /* the step's pairs: the next B of the epoch's order (the end of an epoch reshuffles) */
    for (int j = 0; j < B; j++) {
        if (s->cursor >= s->train->n) {
            s->epoch++;
            s->cursor = 0;
            make_order(s);
        }
        s->batch[j] = s->order[s->cursor++];
    }
    double loss = 0, correct = 0, margin = 0;
    int rc = 0, rank = c->dist ? c->dist->rank : 0, world = c->dist ? c->dist->world : 1;
    int n_micro = (B + P - 1) / P;
    for (int mb = 0; mb < B && !rc; mb += P) {
        if ((mb / P) % world != rank) /* another rank's micro-batch */
            continue;
        if (mb / P + world >= n_micro) /* this rank's last: its sums may start in the backward */
            r1_optim_last_backward(s->opt);
        if ((rc = score_pairs(s, s->train, s->batch + mb, P)))
            break;
        if (c->pointwise) { /* margin: the logit signed toward the label */
            loss += r1_rm_bce_loss(P, s->scores, s->yb, (double)B, s->dscores);
            for (int j = 0; j < P; j++) {
                correct += (s->scores[j] > 0) == (s->yb[j] != 0);
                margin += s->yb[j] ? s->scores[j] : -s->scores[j];
            }
        } else {
            loss += r1_rm_bt_loss(P, s->rc, s->rr, c->margin, (double)B, s->drc, s->drr);
            for (int j = 0; j < P; j++) {
                correct += s->rc[j] > s->rr[j];
                margin += (double)s->rc[j] - s->rr[j];
                s->dscores[2 * j] = s->drc[j];
                s->dscores[2 * j + 1] = s->drr[j];
            }
        }
        rc = r1_model_score_backward(s->m, s->dscores);
    }
    if (rc)
        r1_err_wrap(rc, "step %" PRId64, s->opt->step + 1);
    double sums[3] = {loss, correct, margin};
    int sum_rc = r1_optim_sum_grads(s->opt); /* every rank, also one that failed */
    if ((rc = r1_dist_agree(c->dist, rc ? rc : sum_rc)) ||
        (rc = r1_dist_sum_f64(c->dist, sums, 3))) {
        r1_model_zero_grad(s->m);
        return rc;
    }
    loss = sums[0];
    correct = sums[1];
    margin = sums[2];
    if (!isfinite(loss)) { /* the same sum on every rank: all stop here */
        r1_model_zero_grad(s->m);
        return r1_err_set(R1_ENUMERIC, "reward_model: loss is %g at step %" PRId64, loss,
                          s->opt->step + 1);
    }
    if ((rc = r1_optim_step(s->opt)))
        return rc;
    if (out) {
        out->step = s->opt->step;
        out->loss = loss;
        out->accuracy = correct / B;
        out->margin = margin / B;
        out->grad_norm = s->opt->last_grad_norm;
        out->lr = s->opt->last_lr;
        out->epoch = s->epoch;
    }
    return 0;
}

int r1_rm_stage_evaluate_pointwise(struct r1_rm_stage *s, double *accuracy, double *loss,
                                   double *auc, int64_t *n_items)
{
    *accuracy = *loss = 0;
    *auc = 0.5;
    *n_items = 0;
    if (!s->eval || !s->cfg.pointwise)
        return 0;
    int P = s->cfg.micro_batch_size;
    int64_t n = s->eval->n;
    float *all = malloc((size_t)n * sizeof(float));
    if (!all)
        return r1_err_set(R1_ENOMEM, "reward_model: out of memory for %lld scores", (long long)n);
    double correct = 0, lsum = 0;
    for (int64_t i0 = 0; i0 < n; i0 += P) {
        int np = n - i0 < P ? (int)(n - i0) : P;
        for (int j = 0; j < np; j++)
            s->batch[j] = i0 + j;
        int rc = score_pairs(s, s->eval, s->batch, np);
        if (rc) {
            free(all);
            return rc;
        }
        lsum += r1_rm_bce_loss(np, s->scores, s->yb, 1.0, NULL);
        for (int j = 0; j < np; j++) {
            correct += (s->scores[j] > 0) == (s->yb[j] != 0);
            all[i0 + j] = s->scores[j];
        }
    }
    *accuracy = correct / (double)n;
    *loss = lsum / (double)n;
    *auc = r1_rm_auc(n, all, s->eval->label);
    *n_items = n;
    free(all);
    return 0;
}

int r1_rm_stage_evaluate(struct r1_rm_stage *s, double *accuracy, double *loss, double *margin,
                         int64_t *n_pairs)
{
    *accuracy = *loss = *margin = 0;
    *n_pairs = 0;
    if (!s->eval || s->cfg.pointwise)
        return 0;
    int P = s->cfg.micro_batch_size;
    int64_t n = s->eval->n;
    double correct = 0, lsum = 0, msum = 0;
    for (int64_t i0 = 0; i0 < n; i0 += P) {
        int np = n - i0 < P ? (int)(n - i0) : P;
        for (int j = 0; j < np; j++)
            s->batch[j] = i0 + j; /* batch_size >= micro_batch_size: room for np indices */
        int rc = score_pairs(s, s->eval, s->batch, np);
        if (rc)
            return rc;
        lsum += r1_rm_bt_loss(np, s->rc, s->rr, s->cfg.margin, 1.0, NULL, NULL);
        for (int j = 0; j < np; j++) {
            correct += s->rc[j] > s->rr[j];
            msum += (double)s->rc[j] - s->rr[j];
        }
    }
    *accuracy = correct / (double)n;
    *loss = lsum / (double)n;
    *margin = msum / (double)n;
    *n_pairs = n;
    return 0;
}

int r1_rm_stage_save(const struct r1_rm_stage *s, const char *dir)
{
    int rc = r1_stage_save_weights(s->m, s->tok, s->opt, dir);
    if (rc)
        return rc;
    char seed[32];
    snprintf(seed, sizeof(seed), "%016" PRIx64, s->cfg.seed); /* u64 exactly, not a double */
    return r1_stage_write_state(
        dir, json_pack("{s:s, s:I, s:I, s:I, s:I, s:s, s:s}", "format", "r1-rm-state-1", "step",
                       (json_int_t)s->opt->step, "steps_total", (json_int_t)s->cfg.steps,
                       "data_epoch", (json_int_t)s->epoch, "data_cursor", (json_int_t)s->cursor,
                       "data_sha256", s->train->sha256, "seed_hex", seed));
}

int r1_rm_stage_load(struct r1_rm_stage *s, const char *dir)
{
    char path[4096];
    int rc = r1_stage_load_weights(s->m, s->opt, dir);
    if (rc)
        return rc;
    snprintf(path, sizeof(path), "%s/trainer_state.json", dir);
    json_error_t e;
    json_t *o = json_load_file(path, 0, &e);
    json_int_t step = -1, epoch = -1, cursor = -1;
    const char *sha = NULL, *format = NULL;
    if (!o ||
        json_unpack(o, "{s:s, s:I, s:I, s:I, s:s}", "format", &format, "step", &step, "data_epoch",
                    &epoch, "data_cursor", &cursor, "data_sha256", &sha) != 0 ||
        strcmp(format, "r1-rm-state-1") != 0 || epoch < 0 || cursor < 0 || cursor > s->train->n) {
        json_decref(o);
        return r1_err_set(R1_EFORMAT,
                          "%s: missing or malformed reward-model trainer state; "
                          "resume from an earlier checkpoint",
                          path);
    }
    if (strcmp(sha, s->train->sha256) != 0) {
        rc = r1_err_set(R1_EINVAL,
                        "%s: the training pairs changed since this checkpoint "
                        "(sha256 %.12s..., now %.12s...); restore the data",
                        path, sha, s->train->sha256);
        json_decref(o);
        return rc;
    }
    json_decref(o);
    if (step != s->opt->step)
        return r1_err_set(R1_EFORMAT, "%s: step %lld disagrees with the optimizer state's %" PRId64,
                          path, (long long)step, s->opt->step);
    s->epoch = epoch;
    s->cursor = cursor;
    make_order(s);
    return 0;
}

/* ---- the stage interface (stages/stage.h) ---------------------------------------------- */

struct rm_adapter {
    struct r1_model *rm; /* the score-head model this stage trains (owned) */
    struct r1_rm_stage *s;
    const char *name;
    struct r1_rm_metrics last;
    struct r1_data_hash data;
    bool pointwise;
};

static int rm_validate(const struct r1_recipe *r, int index)
{
    const struct r1_stage_cfg *s = &r->stages[index];
    if (s->data.stage)
        return r1_err_set(R1_EINVAL,
                          "%s: stage '%s' (reward_model) reads preference pairs from "
                          "data.path (JSONL) or data.generator (prefs:...), not data.stage",
                          r->path, s->name);
    if (!s->data.path && !s->data.generator)
        return r1_err_set(R1_EINVAL,
                          "%s: stage '%s' (reward_model) needs data.path (JSONL with "
                          "prompt, chosen and rejected) or data.generator (prefs:...)",
                          r->path, s->name);
    if (s->data.format != R1_DATA_JSONL)
        return r1_err_set(R1_EINVAL,
                          "%s: stage '%s' (reward_model) reads JSONL pairs: set "
                          "data.format to jsonl",
                          r->path, s->name);
    if (s->data.generator) {
        struct r1_datagen *g = NULL;
        int rc = r1_datagen_parse(&g, s->data.generator);
        r1_datagen_free(g);
        if (rc)
            return r1_err_wrap(rc, "%s: stage '%s' data.generator", r->path, s->name);
        bool pw = s->reward_model.mode == R1_RM_POINTWISE;
        const char *want = pw ? "safety" : "prefs";
        size_t wl = strlen(want);
        if (strncmp(s->data.generator, want, wl) != 0 ||
            (s->data.generator[wl] && s->data.generator[wl] != ':'))
            return r1_err_set(R1_EINVAL,
                              "%s: stage '%s' (reward_model, mode %s): data.generator '%s' "
                              "makes no %s; use %s:...",
                              r->path, s->name, pw ? "pointwise" : "pairwise", s->data.generator,
                              pw ? "labelled responses" : "preference pairs", want);
    }
    int64_t mbs = s->micro_batch_size ? s->micro_batch_size : s->batch_size;
    if (s->batch_size % mbs != 0)
        return r1_err_set(R1_EINVAL,
                          "%s: stage '%s': micro_batch_size %lld must divide "
                          "batch_size %lld (both count pairs)",
                          r->path, s->name, (long long)mbs, (long long)s->batch_size);
    if (s->seq_len < 2)
        return r1_err_set(R1_EINVAL,
                          "%s: stage '%s': seq_len %lld is too short to hold a "
                          "prompt and a response",
                          r->path, s->name, (long long)s->seq_len);
    /* the pairs files now, not after the stages before this one have run */
    const char *files[2] = {s->data.path, s->data.eval_path};
    for (int k = 0; k < 2; k++) {
        if (!files[k])
            continue;
        struct r1_rm_data_spec sp = {files[k],
                                     NULL,
                                     0,
                                     0,
                                     0,
                                     s->data.prompt_field,
                                     s->reward_model.chosen_field,
                                     s->reward_model.rejected_field,
                                     s->reward_model.mode == R1_RM_POINTWISE,
                                     s->reward_model.response_field,
                                     s->reward_model.label_field};
        int rc = scan_jsonl(NULL, &sp, NULL);
        if (rc)
            return r1_err_wrap(rc, "%s: stage '%s' (kind reward_model) %s", r->path, s->name,
                               k ? "data.eval_path" : "data.path");
    }
    if (s->data.template_) {
        char *t = r1_prompt_template_apply(s->data.template_, "");
        if (!t)
            return r1_err_wrap(r1_err_code() ? r1_err_code() : R1_ENOMEM,
                               "%s: stage '%s' "
                               "data.template",
                               r->path, s->name);
        free(t);
    }
    return 0;
}

static int rm_init(void **state, const struct r1_stage_env *env)
{
    const struct r1_recipe *r = env->recipe;
    const struct r1_stage_cfg *s = &r->stages[env->index];
    struct rm_adapter *a = calloc(1, sizeof(*a));
    if (!a)
        return r1_err_set(R1_ENOMEM, "reward_model stage: out of memory");
    uint64_t seed = (uint64_t)r->seed + (uint64_t)env->index;
    /* the score model: the starting model's weights, a fresh score head unless it has one */
    struct r1_model_config mc = env->model->cfg;
    mc.num_labels = 1;
    if (mc.pad_id < 0 && env->tok->pad_id >= 0 && env->tok->pad_id < mc.vocab_size)
        mc.pad_id = env->tok->pad_id;
    int rc = r1_model_create(&a->rm, &mc, env->be);
    if (!rc)
        rc = r1_model_copy_weights(a->rm, env->model, NULL);
    if (!rc && !r1_model_has_score_head(env->model))
        rc = r1_model_init_score(a->rm, seed);
    if (rc) {
        r1_model_free(a->rm);
        free(a);
        return rc;
    }
    bool pointwise = s->reward_model.mode == R1_RM_POINTWISE;
    struct r1_rm_data_spec train = {s->data.path,
                                    s->data.generator,
                                    s->data.size,
                                    seed,
                                    R1_SPLIT_TRAIN,
                                    s->data.prompt_field,
                                    s->reward_model.chosen_field,
                                    s->reward_model.rejected_field,
                                    pointwise,
                                    s->reward_model.response_field,
                                    s->reward_model.label_field};
    struct r1_rm_data_spec eval = train;
    eval.split = R1_SPLIT_EVAL;
    eval.gen_n = s->data.eval_size;
    if (s->data.eval_path) {
        eval.path = s->data.eval_path;
        eval.generator = NULL;
    } else if (!s->data.generator || s->data.eval_size <= 0) {
        eval.path = eval.generator = NULL;
    } else {
        eval.path = NULL;
    }
    struct r1_rm_config c = {
        .pointwise = pointwise,
        .steps = s->steps,
        .epochs = s->epochs,
        .batch_size = (int)s->batch_size,
        .micro_batch_size = (int)(s->micro_batch_size ? s->micro_batch_size : s->batch_size),
        .seq_len = (int)s->seq_len,
        .seed = seed,
        .margin = s->reward_model.margin,
        .template_ = s->data.template_,
        .optim = s->optim,
        .train = train,
        .eval = eval,
        .dist = env->dist,
    };
    if ((rc = r1_rm_stage_create(&a->s, a->rm, env->tok, &c))) {
        r1_model_free(a->rm);
        free(a);
        return rc;
    }
    a->name = s->name;
    a->pointwise = pointwise;
    const char *slash = s->data.path ? strrchr(s->data.path, '/') : NULL;
    a->data.name = s->data.path ? (slash ? slash + 1 : s->data.path) : s->data.generator;
    a->data.sha256 = r1_rm_stage_data_sha256(a->s);
    *state = a;
    return 0;
}

static int rm_step(void *state, struct r1_stage_metrics *out)
{
    struct rm_adapter *a = state;
    int rc = r1_rm_stage_step(a->s, &a->last);
    if (rc)
        return rc;
    const struct r1_rm_metrics *m = &a->last;
    *out = (struct r1_stage_metrics){
        m->step,
        6,
        {"loss", "accuracy", "margin", "grad_norm", "lr", "epoch"},
        {m->loss, m->accuracy, m->margin, m->grad_norm, m->lr, (double)m->epoch},
        NULL};
    return 0;
}

static int rm_evaluate(void *state, struct r1_stage_metrics *out)
{
    struct rm_adapter *a = state;
    double acc, loss, margin, auc;
    int64_t n;
    if (a->pointwise) {
        int rc = r1_rm_stage_evaluate_pointwise(a->s, &acc, &loss, &auc, &n);
        if (rc)
            return rc;
        out->n = 0;
        if (n == 0)
            return 0;
        *out = (struct r1_stage_metrics){0,
                                         4,
                                         {"eval/accuracy", "eval/auc", "eval/loss", "eval/items"},
                                         {acc, auc, loss, (double)n},
                                         NULL};
        return 0;
    }
    int rc = r1_rm_stage_evaluate(a->s, &acc, &loss, &margin, &n);
    if (rc)
        return rc;
    out->n = 0;
    if (n == 0)
        return 0;
    *out = (struct r1_stage_metrics){
        0,
        4,
        {"eval/pairwise_accuracy", "eval/loss", "eval/margin", "eval/pairs"},
        {acc, loss, margin, (double)n},
        NULL};
    return 0;
}

static const char *const rm_file_names[] = {"config.json", "model.safetensors",
                                            "optimizer.safetensors", "trainer_state.json"};

static int rm_save(void *state, const char *dir, const char *const **files, int *n_files)
{
    *files = rm_file_names;
    *n_files = (int)(sizeof(rm_file_names) / sizeof(rm_file_names[0]));
    return r1_rm_stage_save(((struct rm_adapter *)state)->s, dir);
}

static int rm_load(void *state, const char *dir)
{
    return r1_rm_stage_load(((struct rm_adapter *)state)->s, dir);
}

static void rm_progress(const void *state, int64_t *done, int64_t *total)
{
    const struct rm_adapter *a = state;
    *done = r1_rm_stage_steps_done(a->s);
    *total = r1_rm_stage_steps_total(a->s);
}

static bool rm_finished(const void *state)
{
    int64_t done, total;
    rm_progress(state, &done, &total);
    return done >= total;
}

static void rm_summary(const void *state, char *buf, size_t cap)
{
    const struct rm_adapter *a = state;
    int64_t done, total;
    rm_progress(state, &done, &total);
    snprintf(buf, cap, "%s: step %" PRId64 " of %" PRId64 ", loss %.4f, pair accuracy %.3f",
             a->name, done, total, a->last.loss, a->last.accuracy);
}

static const struct r1_data_hash *rm_data(const void *state, int *n)
{
    *n = 1;
    return &((const struct rm_adapter *)state)->data;
}

static void rm_free(void *state)
{
    struct rm_adapter *a = state;
    if (!a)
        return;
    r1_rm_stage_free(a->s);
    r1_model_free(a->rm);
    free(a);
}

static struct r1_optim *rm_optim(void *state)
{
    return ((struct rm_adapter *)state)->s->opt;
}

const struct r1_stage_ops r1_reward_model_stage_ops = {
    "reward_model", rm_validate, rm_init,    rm_step,     rm_save, rm_load,
    rm_finished,    rm_progress, rm_summary, rm_evaluate, rm_data, rm_free,
    rm_optim,
};
