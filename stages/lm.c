/* lm.c - pretrain and sft stages (see lm.h). */
#include "stages/lm.h"

#include <inttypes.h>
#include <jansson.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/err.h"
#include "core/hfdir.h"
#include "stages/data/gen.h"
#include "stages/data/prompts.h"
#include "stages/evaluate.h"
#include "stages/stage.h"

struct r1_lm_stage {
    struct r1_lm_config cfg;
    struct r1_model *m;
    const struct r1_tokenizer *tok; /* borrowed; its files go into every checkpoint */
    struct r1_optim *opt;
    struct r1_corpus *corpus;
    struct r1_sampler sampler;
    /* the whole batch on the host: (batch_size, seq_len) each */
    int32_t *tokens, *pos, *seg, *targets;
    float *weights;
};

int r1_lm_stage_create(struct r1_lm_stage **out, struct r1_model *m,
                       const struct r1_tokenizer *tok, const struct r1_lm_config *cfg)
{
    if ((cfg->steps <= 0 && cfg->epochs <= 0) || cfg->batch_size <= 0 || cfg->micro_batch_size <= 0 ||
        cfg->batch_size % cfg->micro_batch_size != 0 || cfg->seq_len <= 0)
        return r1_err_set(R1_EINVAL, "lm stage: steps (%" PRId64 "), batch_size (%d), "
                          "micro_batch_size (%d) and seq_len (%d) must be positive and "
                          "micro_batch_size must divide batch_size", cfg->steps, cfg->batch_size,
                          cfg->micro_batch_size, cfg->seq_len);
    struct r1_lm_stage *s = calloc(1, sizeof(*s));
    if (!s)
        return r1_err_set(R1_ENOMEM, "lm stage: out of memory");
    s->cfg = *cfg;
    s->m = m;
    s->tok = tok;
    size_t n = (size_t)cfg->batch_size * cfg->seq_len;
    int rc;
    if ((rc = r1_corpus_load(&s->corpus, &cfg->data, tok)) ||
        (rc = r1_sampler_init(&s->sampler, s->corpus, cfg->seq_len, cfg->seed)) ||
        (rc = r1_model_reserve(m, cfg->micro_batch_size, cfg->seq_len)))
        goto fail;
    if (s->cfg.steps <= 0) /* packed rows per epoch vary with the order: counted exactly */
        s->cfg.steps = (r1_sampler_rows(&s->sampler, cfg->epochs) + cfg->batch_size - 1) /
                       cfg->batch_size;
    if (s->cfg.optim.total_steps <= 0)
        s->cfg.optim.total_steps = s->cfg.steps; /* schedules decay over the stage */
    if ((rc = r1_optim_create(&s->opt, m, &s->cfg.optim)) ||
        (rc = r1_optim_join(s->opt, cfg->dist)))
        goto fail;
    s->tokens = malloc(n * sizeof(int32_t));
    s->pos = malloc(n * sizeof(int32_t));
    s->seg = malloc(n * sizeof(int32_t));
    s->targets = malloc(n * sizeof(int32_t));
    s->weights = malloc(n * sizeof(float));
    if (!s->tokens || !s->pos || !s->seg || !s->targets || !s->weights) {
        rc = r1_err_set(R1_ENOMEM, "lm stage: out of memory for a %zu-token batch", n);
        goto fail;
    }
    *out = s;
    return 0;
fail:
    r1_lm_stage_free(s);
    return rc;
}

void r1_lm_stage_free(struct r1_lm_stage *s)
{
    if (!s)
        return;
    r1_optim_free(s->opt);
    r1_sampler_release(&s->sampler);
    r1_corpus_free(s->corpus);
    free(s->tokens);
    free(s->pos);
    free(s->seg);
    free(s->targets);
    free(s->weights);
    free(s);
}

int64_t r1_lm_stage_steps_done(const struct r1_lm_stage *s) { return s->opt->step; }
struct r1_optim *r1_lm_stage_optim(struct r1_lm_stage *s) { return s->opt; }
int64_t r1_lm_stage_steps_total(const struct r1_lm_stage *s) { return s->cfg.steps; }
const char *r1_lm_stage_data_sha256(const struct r1_lm_stage *s) { return s->corpus->sha256; }

int r1_lm_stage_step(struct r1_lm_stage *s, struct r1_lm_metrics *out)
{
    const struct r1_lm_config *c = &s->cfg;
    int64_t scored = r1_sampler_next(&s->sampler, c->batch_size, s->tokens, s->pos, s->seg,
                                     s->targets, s->weights);
    int rank = c->dist ? c->dist->rank : 0, world = c->dist ? c->dist->world : 1;
    double loss = 0;
    int rc = 0;
    if (scored > 0) { /* a batch with no scored token (all prompts truncated) is skipped */
        int n_micro = (c->batch_size + c->micro_batch_size - 1) / c->micro_batch_size;
        for (int mb = 0, i = 0; mb < c->batch_size && !rc; mb += c->micro_batch_size, i++) {
            if (i % world != rank) /* another rank's micro-batch */
                continue;
            if (i + world >= n_micro) /* this rank's last: its sums may start in the backward */
                r1_optim_last_backward(s->opt);
            size_t o = (size_t)mb * c->seq_len;
            struct r1_batch b = {c->micro_batch_size, c->seq_len, s->tokens + o, s->pos + o,
                                 s->seg + o, s->targets + o};
            double part = 0;
            if ((rc = r1_model_ce_step(s->m, &b, s->weights + o, (double)scored, &part)))
                r1_err_wrap(rc, "step %" PRId64, s->opt->step + 1);
            loss += part;
        }
    }
    /* every rank completes the gradient sums (a failed one with what it has), then the
     * ranks stop together when one failed */
    int sum_rc = r1_optim_sum_grads(s->opt);
    if ((rc = r1_dist_agree(c->dist, rc ? rc : sum_rc)) ||
        (rc = r1_dist_sum_f64(c->dist, &loss, 1))) {
        r1_model_zero_grad(s->m);
        return rc;
    }
    rc = r1_optim_step(s->opt);
    if (rc)
        return rc;
    if (out) {
        out->step = s->opt->step;
        out->loss = loss;
        out->grad_norm = s->opt->last_grad_norm;
        out->lr = s->opt->last_lr;
        out->tokens = scored;
        out->epoch = s->sampler.epoch;
    }
    return 0;
}

int r1_lm_stage_save(const struct r1_lm_stage *s, const char *dir)
{
    int rc = r1_stage_save_weights(s->m, s->tok, s->opt, dir);
    if (rc)
        return rc;
    char seed[32];
    snprintf(seed, sizeof(seed), "%016" PRIx64, s->cfg.seed); /* u64 exactly, not a double */
    return r1_stage_write_state(
        dir, json_pack("{s:s, s:I, s:I, s:I, s:I, s:s, s:s}", "format", "r1-lm-state-1", "step",
                       (json_int_t)s->opt->step, "steps_total", (json_int_t)s->cfg.steps,
                       "data_epoch", (json_int_t)s->sampler.epoch, "data_cursor",
                       (json_int_t)s->sampler.cursor, "data_sha256", s->corpus->sha256,
                       "seed_hex", seed));
}

int r1_lm_stage_load(struct r1_lm_stage *s, const char *dir)
{
    char path[4096];
    int rc = r1_stage_load_weights(s->m, s->opt, dir);
    if (rc)
        return rc;
    snprintf(path, sizeof(path), "%s/trainer_state.json", dir);
    json_error_t e;
    json_t *o = json_load_file(path, 0, &e);
    json_int_t step = -1, epoch = -1, cursor = -1;
    const char *sha = NULL;
    if (!o || json_unpack(o, "{s:I, s:I, s:I, s:s}", "step", &step, "data_epoch", &epoch,
                          "data_cursor", &cursor, "data_sha256", &sha) != 0) {
        json_decref(o);
        return r1_err_set(R1_EFORMAT, "%s: missing or malformed trainer state; resume from an "
                          "earlier checkpoint", path);
    }
    if (strcmp(sha, s->corpus->sha256) != 0) {
        json_decref(o);
        return r1_err_set(R1_EINVAL, "%s: the training data changed since this checkpoint "
                          "(sha256 %.12s..., now %.12s...); restore the data file",
                          path, sha, s->corpus->sha256);
    }
    json_decref(o);
    if (step != s->opt->step)
        return r1_err_set(R1_EFORMAT, "%s: step %lld disagrees with the optimizer state's %" PRId64,
                          path, (long long)step, s->opt->step);
    return r1_sampler_seek(&s->sampler, epoch, cursor);
}

/* ---- the stage interface (stages/stage.h) for pretrain and sft ---------------- */

struct lm_adapter {
    struct r1_lm_stage *s;
    const char *name;
    struct r1_lm_metrics last;
    struct r1_data_hash data[2];
    int n_data;
    /* sft evaluation on held-out prompts (NULL: none) */
    struct r1_model *m;
    const struct r1_tokenizer *tok;
    struct r1_prompt_set *eval;
    int eval_len; /* completion tokens at most */
    uint64_t eval_seed;
    int eval_samples, gen_slots;
    float eval_temperature;
    struct r1_dist *dist; /* evaluation split over the job's ranks */
};

#define LM_EVAL_MAX_COMPLETION 256

static int lm_validate(const struct r1_recipe *r, int index)
{
    const struct r1_stage_cfg *s = &r->stages[index];
    bool sft = s->kind == R1_STAGE_SFT;
    if (!s->data.path && !s->data.stage && !s->data.generator)
        return r1_err_set(R1_EINVAL, "%s: stage '%s' needs data.path (a text or JSONL file) or "
                          "data.generator for a %s stage", r->path, s->name,
                          r1_stage_kind_name(s->kind));
    if (s->data.generator) {
        struct r1_datagen *g = NULL;
        int rc = r1_datagen_parse(&g, s->data.generator);
        r1_datagen_free(g);
        if (rc)
            return r1_err_wrap(rc, "%s: stage '%s' data.generator", r->path, s->name);
        if (s->data.format != R1_DATA_JSONL)
            return r1_err_set(R1_EINVAL, "%s: stage '%s': generated data is JSONL; set "
                              "data.format to jsonl", r->path, s->name);
    }
    if (sft && s->data.format != R1_DATA_JSONL)
        return r1_err_set(R1_EINVAL, "%s: stage '%s' reads prompt/completion pairs: set "
                          "data.format to jsonl", r->path, s->name);
    if (sft && s->data.template_) {
        char *t = r1_prompt_template_apply(s->data.template_, "x");
        if (!t)
            return r1_err_wrap(r1_err_code(), "%s: stage '%s' data.template", r->path, s->name);
        free(t);
    }
    return 0;
}

/* Held-out prompts of an sft stage: data.eval_path, else the generator's eval split. */
static int load_eval(struct lm_adapter *a, const struct r1_stage_env *env, uint64_t seed)
{
    const struct r1_stage_cfg *s = &env->recipe->stages[env->index];
    if (s->kind != R1_STAGE_SFT)
        return 0;
    int rc = r1_eval_prompts_load(&a->eval, env, seed, 0);
    if (rc || !a->eval)
        return rc;
    /* room to answer: within the stage's rows and the model's positions */
    int room = (int)s->seq_len < env->model->cfg.max_seq_len ? (int)s->seq_len
                                                              : env->model->cfg.max_seq_len;
    room -= a->eval->max_tokens;
    a->eval_len = room < LM_EVAL_MAX_COMPLETION ? room : LM_EVAL_MAX_COMPLETION;
    if (a->eval_len < 1)
        return r1_err_set(R1_EINVAL, "%s: stage '%s': a %d-token evaluation prompt leaves no "
                          "room for an answer in seq_len %lld; raise seq_len or shorten the "
                          "prompts", env->recipe->path, s->name, a->eval->max_tokens,
                          (long long)s->seq_len);
    a->m = env->model;
    a->tok = env->tok;
    a->eval_seed = seed ^ 0x6576616c5f736674ull;
    a->eval_samples = (int)s->eval_samples;
    a->gen_slots = (int)s->gen_slots;
    a->eval_temperature = s->eval_temperature;
    if (s->data.eval_path) {
        const char *slash = strrchr(s->data.eval_path, '/');
        a->data[a->n_data++] = (struct r1_data_hash){slash ? slash + 1 : s->data.eval_path,
                                                     a->eval->sha256};
    }
    return 0;
}

static void lm_free(void *state);

static int lm_init(void **state, const struct r1_stage_env *env)
{
    const struct r1_stage_cfg *s = &env->recipe->stages[env->index];
    struct lm_adapter *a = calloc(1, sizeof(*a));
    if (!a)
        return r1_err_set(R1_ENOMEM, "lm stage: out of memory");
    bool sft = s->kind == R1_STAGE_SFT;
    uint64_t seed = (uint64_t)env->recipe->seed + (uint64_t)env->index;
    struct r1_lm_config c = {
        .steps = s->steps,
        .epochs = s->epochs,
        .batch_size = (int)s->batch_size,
        .micro_batch_size = (int)(s->micro_batch_size ? s->micro_batch_size : s->batch_size),
        .seq_len = (int)s->seq_len,
        .seed = seed,
        .optim = s->optim,
        .data = {
            .path = env->data_path ? env->data_path : s->data.path ? s->data.path
                                                                   : s->data.generator,
            .kind = sft ? R1_CORPUS_PAIRS : R1_CORPUS_DOCUMENTS,
            .format = s->data.format == R1_DATA_JSONL ? R1_CORPUS_JSONL : R1_CORPUS_TEXT,
            .text_field = s->data.text_field,
            .prompt_field = s->data.prompt_field,
            .completion_field = s->data.completion_field,
            .generator = env->data_path || s->data.path ? NULL : s->data.generator,
            .gen_n = s->data.size,
            .gen_seed = seed,
            .messages_field = sft ? s->data.messages_field : NULL,
            .chat_template = sft ? env->chat_template : NULL,
            .chat_jinja = sft ? env->tok->chat_template : NULL,
            .prompt_template = sft ? s->data.template_ : NULL,
            .pack = sft && s->data.pack,
        },
        .dist = env->dist,
    };
    int rc = r1_lm_stage_create(&a->s, env->model, env->tok, &c);
    if (rc) {
        free(a);
        return rc;
    }
    a->name = s->name;
    a->dist = env->dist;
    const char *slash = s->data.path ? strrchr(s->data.path, '/') : NULL;
    a->data[0].name = s->data.path ? (slash ? slash + 1 : s->data.path)
                      : s->data.stage ? s->data.stage : s->data.generator;
    a->data[0].sha256 = r1_lm_stage_data_sha256(a->s);
    a->n_data = 1;
    if ((rc = load_eval(a, env, seed))) {
        lm_free(a);
        return rc;
    }
    *state = a;
    return 0;
}

static int lm_step(void *state, struct r1_stage_metrics *out)
{
    struct lm_adapter *a = state;
    int rc = r1_lm_stage_step(a->s, &a->last);
    if (rc)
        return rc;
    const struct r1_lm_metrics *m = &a->last;
    *out = (struct r1_stage_metrics){m->step, 5, {"loss", "grad_norm", "lr", "tokens", "epoch"},
                                     {m->loss, m->grad_norm, m->lr, (double)m->tokens,
                                      (double)m->epoch},
                                     NULL};
    return 0;
}

/* sft: pass@1 over eval_samples completions per held-out prompt at eval_temperature
 * (default: one greedy completion; accuracy reward, its default settings); pretrain and
 * sft without held-out prompts: nothing. */
static int lm_evaluate(void *state, struct r1_stage_metrics *out)
{
    struct lm_adapter *a = state;
    out->n = 0;
    out->samples = NULL;
    if (!a->eval)
        return 0;
    struct r1_eval_spec sp = {a->eval,     a->eval_samples, a->eval_temperature, 1.0f,
                              a->eval_len, a->eval_seed,    NULL, 0, NULL, a->m->precision, a->dist,
                              NULL,    a->gen_slots};
    return r1_eval_generate(a->m, a->tok, &sp, out);
}

static const char *const lm_file_names[] = {"config.json", "model.safetensors",
                                            "optimizer.safetensors", "trainer_state.json"};

static int lm_save(void *state, const char *dir, const char *const **files, int *n_files)
{
    struct lm_adapter *a = state;
    *files = lm_file_names;
    *n_files = (int)(sizeof(lm_file_names) / sizeof(lm_file_names[0]));
    return r1_lm_stage_save(a->s, dir);
}

static int lm_load(void *state, const char *dir)
{
    return r1_lm_stage_load(((struct lm_adapter *)state)->s, dir);
}

static void lm_progress(const void *state, int64_t *done, int64_t *total)
{
    const struct lm_adapter *a = state;
    *done = r1_lm_stage_steps_done(a->s);
    *total = r1_lm_stage_steps_total(a->s);
}

static bool lm_finished(const void *state)
{
    int64_t done, total;
    lm_progress(state, &done, &total);
    return done >= total;
}

static void lm_summary(const void *state, char *buf, size_t cap)
{
    const struct lm_adapter *a = state;
    int64_t done, total;
    lm_progress(state, &done, &total);
    snprintf(buf, cap, "%s: step %" PRId64 " of %" PRId64 ", loss %.4f", a->name, done, total,
             a->last.loss);
}

static const struct r1_data_hash *lm_data(const void *state, int *n)
{
    const struct lm_adapter *a = state;
    *n = a->n_data;
    return a->data;
}

static void lm_free(void *state)
{
    struct lm_adapter *a = state;
    if (!a)
        return;
    r1_lm_stage_free(a->s);
    r1_prompt_set_free(a->eval);
    free(a);
}

static struct r1_optim *lm_optim(void *state)
{
    return r1_lm_stage_optim(((struct lm_adapter *)state)->s);
}

const struct r1_stage_ops r1_lm_stage_ops = {
    "lm", lm_validate, lm_init, lm_step, lm_save, lm_load, lm_finished, lm_progress,
    lm_summary, lm_evaluate, lm_data, lm_free, lm_optim,
};
