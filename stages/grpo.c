/* grpo.c - the grpo stage: group relative policy optimisation with rule rewards.
 *
 * One step:
 *   1. draw P prompts (a shuffled pass over the prompt set; its (epoch, cursor) is
 *      the data state) and sample G completions each with the policy;
 *   2. score every completion with the recipe's rewards (weighted sum, plus the DAPO
 *      soft overlong penalty) and turn rewards into group-relative advantages; with
 *      dynamic sampling, groups whose rewards are all equal are replaced by groups of
 *      newly drawn prompts, up to max_draws generation rounds;
 *   3. log-probs of the batch under the generating policy (when later updates reuse
 *      it) and under the reference model (β > 0), once;
 *   4. μ iterations × `minibatches` optimizer updates over the batch, micro-batched,
 *      with the loss of stages/grpo-loss.h (made with each micro-batch's forward:
 *      r1_model_pg_step).
 * Completions are sampled at grpo.temperature and the losses score the same
 * distribution (model->logit_scale = 1/temperature).
 *
 * Determinism: the completions of step k come from RNG seed f(stage seed, k) and one
 * stream per sequence, so a step is a pure function of the weights, the optimizer
 * and the prompt position — exactly what a checkpoint holds.  Shapes: one completion
 * per training row, rows (S, T) with T = the longest prompt + completion − 1 of the
 * micro-batch; per-completion token arrays are (S, max_completion_len). */
#include <inttypes.h>
#include <jansson.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "core/err.h"
#include "core/generate.h"
#include "core/hfdir.h"
#include "core/optim.h"
#include "core/rng.h"
#include "core/utf8.h"
#include "stages/data/prompts.h"
#include "stages/align.h"
#include "stages/evaluate.h"
#include "stages/grpo-loss.h"
#include "stages/judge.h"
#include "stages/rewards/rewards.h"
#include "stages/stage.h"

#define GEN_STEP_TOKENS 2048

struct grpo {
    const struct r1_recipe *recipe;
    const struct r1_stage_cfg *cfg;
    const struct r1_grpo_cfg *g;
    struct r1_backend *be;
    struct r1_model *m, *ref;
    const struct r1_tokenizer *tok;
    struct r1_optim *opt;
    struct r1_generator *gen;
    struct r1_prompt_set *train, *eval;
    uint64_t seed;
    int64_t step, steps_total, ref_version;
    int64_t epoch, cursor, *order; /* prompt order of the current epoch */
    int P, G, S, draws_max, n_mb, micro, max_comp, T_max;
    int n_rw;
    const struct r1_reward_def **rw; /* (n_rw) */
    const struct r1_reward_def *acc;  /* the correctness judge */
    const struct r1_reward_cfg *acc_cfg;
    struct r1_reward_cfg acc_default;
    int acc_in_list; /* index of the judge in rewards[], -1 when not there */
    int32_t stop_id;

    /* generation of up to draws_max rounds of S sequences */
    int64_t *prompt_of;  /* (draws_max·S) prompt index of each sequence */
    int32_t *comp;       /* (draws_max·S, max_comp) */
    float *gen_lp;       /* (draws_max·S, max_comp) sampler log-probs (unused by the loss) */
    struct r1_gen_result *res;
    float *rew_each;     /* (draws_max·S, n_rw) */
    float *rew;          /* (draws_max·S) */
    float *adv_all;      /* (draws_max·S) */
    float *std_all;      /* (draws_max·P) */
    char *correct;       /* (draws_max·S) */
    /* the kept batch: S sequences, indices into the rounds above */
    int *keep;           /* (S) */
    float *old_lp, *ref_lp; /* (S, max_comp) */
    /* one micro-batch */
    int32_t *tok_b, *pos_b, *seg_b, *tgt_b; /* (micro, T_max) */
    float *lp_b, *old_b, *ref_b, *adv_b, *w_b;

    /* metric names, built once */
    char (*rw_keys)[64];
    struct r1_stage_metrics last;
    char *samples;
    struct r1_align *align; /* align stages: general prompts and the reward model */
    char train_sha[65];     /* the reasoning prompts' own hash, for the ledger */
    struct r1_data_hash data[5];
    int n_data;
    double last_reward, last_acc;
    /* data parallel (env->dist): rank r generates and scores the groups p ≡ r (mod world)
     * of every draw, the ranks' results are summed into the full arrays (zeros elsewhere:
     * an exact gather), and rank r runs micro-batches i ≡ r (mod world) of the update */
    struct r1_dist *dist;
    int rank, world;
    struct r1_gen_request *own_req; /* (S) this rank's requests of a draw */
    struct r1_gen_result *own_res;  /* (S) views of their slots in res */
    int32_t *gather_i;              /* (3·S) n, finish, correct of a draw */
    struct r1_judge *judge;         /* grpo.rewards' judge (NULL: none) */
    double *judge_p;                /* (draws_max·S) its P(yes) of each completion */
    char judge_name[96], judge_sha[65]; /* its R1-Data entry */
    char judge_log_name[96], judge_log_sha[65]; /* the verdict log, as of the last step */
};

static double now_s(void)
{
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (double)t.tv_sec + 1e-9 * (double)t.tv_nsec;
}

/* ---- validation ---------------------------------------------------------------- */

static int grpo_validate(const struct r1_recipe *r, int index)
{
    const struct r1_stage_cfg *s = &r->stages[index];
    const struct r1_grpo_cfg *g = &s->grpo;
    int prc = r1_stage_check_prompt_data(r, index);
    if (prc)
        return prc;
    int64_t S = g->prompts_per_step * g->group_size;
    if (S % g->minibatches != 0)
        return r1_err_set(R1_EINVAL, "%s: stage '%s' grpo.minibatches (%" PRId64 ") must divide "
                          "prompts_per_step × group_size (%" PRId64 ")", r->path, s->name,
                          g->minibatches, S);
    int64_t mb = S / g->minibatches;
    if (s->micro_batch_size > 0 && mb % s->micro_batch_size != 0)
        return r1_err_set(R1_EINVAL, "%s: stage '%s' micro_batch_size (%" PRId64 ") must divide "
                          "the %" PRId64 " completions of one update (prompts_per_step × "
                          "group_size / minibatches)", r->path, s->name, s->micro_batch_size, mb);
    if (g->overlong_buffer >= g->max_completion_len)
        return r1_err_set(R1_EINVAL, "%s: stage '%s' grpo.overlong_buffer (%" PRId64 ") must be "
                          "below max_completion_len (%" PRId64 ")", r->path, s->name,
                          g->overlong_buffer, g->max_completion_len);
    int rrc = r1_reward_check_list(g->rewards, g->n_rewards, "grpo.rewards");
    if (rrc)
        return r1_err_wrap(rrc, "%s: stage '%s'", r->path, s->name);
    if (!r1_reward_find(g->accuracy_reward))
        return r1_err_set(R1_EINVAL, "%s: stage '%s' grpo.accuracy_reward: unknown reward '%s'",
                          r->path, s->name, g->accuracy_reward);
    if (s->epochs > 0)
        return r1_err_set(R1_EINVAL, "%s: stage '%s' is counted in steps (one generation batch "
                          "each): set steps instead of epochs", r->path, s->name);
    if (s->kind == R1_STAGE_ALIGN) {
        const struct r1_align_cfg *a = &s->align;
        if (a->general_generator) {
            struct r1_datagen *dg = NULL;
            int rc = r1_datagen_parse(&dg, a->general_generator);
            r1_datagen_free(dg);
            if (rc)
                return r1_err_wrap(rc, "%s: stage '%s' align.general_generator", r->path,
                                   s->name);
        }
        if ((a->general_path || a->general_generator) && a->rm_start_step >= s->steps)
            return r1_err_set(R1_EINVAL, "%s: stage '%s' align.rm_start_step (%" PRId64 ") is "
                              "not below steps (%" PRId64 "): the reward model would never "
                              "score; lower it", r->path, s->name, a->rm_start_step, s->steps);
    }
    return 0;
}

/* ---- set-up -------------------------------------------------------------------- */

static void grpo_free(void *state);

static int load_prompts(struct grpo *s, const struct r1_stage_env *env)
{
    const struct r1_stage_cfg *c = s->cfg;
    int limit = s->m->cfg.max_seq_len - s->max_comp;
    if (limit < 1)
        return r1_err_set(R1_EINVAL, "%s: stage '%s' grpo.max_completion_len (%d) leaves no room "
                          "for a prompt in the model's %d positions", env->recipe->path, c->name,
                          s->max_comp, s->m->cfg.max_seq_len);
    struct r1_prompt_spec sp = {c->data.path, c->data.generator, c->data.size, s->seed,
                                R1_SPLIT_TRAIN, c->data.prompt_field, c->data.answer_field,
                                c->data.template_, limit, env->chat_template,
                                env->tok->chat_template};
    int rc = r1_prompt_set_load(&s->train, &sp, s->tok);
    if (rc)
        return r1_err_wrap(rc, "stage '%s' (prompts longer than %d tokens do not fit "
                           "max_completion_len %d in %d positions)", c->name, limit, s->max_comp,
                           s->m->cfg.max_seq_len);
    const char *slash = c->data.path ? strrchr(c->data.path, '/') : NULL;
    memcpy(s->train_sha, s->train->sha256, sizeof(s->train_sha));
    s->data[0] = (struct r1_data_hash){c->data.path ? (slash ? slash + 1 : c->data.path)
                                                    : c->data.generator,
                                       s->train_sha};
    s->n_data = 1;
    if (c->kind == R1_STAGE_ALIGN) {
        if ((rc = r1_align_create(&s->align, env, s->train, limit)))
            return rc;
        int na = 0;
        const struct r1_data_hash *ad = r1_align_data(s->align, &na);
        if (na)
            s->data[s->n_data++] = *ad;
    }
    if ((rc = r1_eval_prompts_load(&s->eval, env, s->seed, limit)))
        return rc;
    if (s->eval && c->data.eval_path) {
        slash = strrchr(c->data.eval_path, '/');
        s->data[s->n_data++] = (struct r1_data_hash){slash ? slash + 1 : c->data.eval_path,
                                                     s->eval->sha256};
    }
    return 0;
}

static void shuffle_epoch(struct grpo *s)
{
    for (int64_t i = 0; i < s->train->n; i++)
        s->order[i] = i;
    struct r1_rng r = r1_rng_make(s->seed, R1_STREAM_DATA + (uint64_t)s->epoch);
    r1_rng_shuffle(&r, s->order, s->train->n);
}

static int64_t next_prompt(struct grpo *s)
{
    if (s->cursor >= s->train->n) {
        s->epoch++;
        s->cursor = 0;
        shuffle_epoch(s);
    }
    return s->order[s->cursor++];
}

#define ALLOC(p, n)                                                                             \
    do {                                                                                        \
        if (!((p) = calloc((size_t)(n) > 0 ? (size_t)(n) : 1, sizeof(*(p)))))                  \
            goto oom;                                                                           \
    } while (0)

static int grpo_init(void **state, const struct r1_stage_env *env)
{
    const struct r1_stage_cfg *c = &env->recipe->stages[env->index];
    struct grpo *s = calloc(1, sizeof(*s));
    if (!s)
        return r1_err_set(R1_ENOMEM, "grpo stage: out of memory");
    s->recipe = env->recipe;
    s->cfg = c;
    s->g = &c->grpo;
    s->be = env->be;
    s->m = env->model;
    s->tok = env->tok;
    s->seed = (uint64_t)env->recipe->seed + (uint64_t)env->index;
    s->steps_total = c->steps;
    s->P = (int)s->g->prompts_per_step;
    s->G = (int)s->g->group_size;
    s->S = s->P * s->G;
    s->draws_max = s->g->dynamic_sampling ? (int)s->g->max_draws : 1;
    s->n_mb = (int)s->g->minibatches;
    s->micro = c->micro_batch_size > 0 ? (int)c->micro_batch_size : s->S / s->n_mb;
    s->max_comp = (int)s->g->max_completion_len;
    s->stop_id = s->m->cfg.eos_id;
    s->acc_in_list = -1;
    s->dist = env->dist;
    s->rank = env->dist ? env->dist->rank : 0;
    s->world = env->dist ? env->dist->world : 1;
    s->m->logit_scale = s->g->temperature > 0 ? 1.0f / s->g->temperature : 1.0f;
    int rc;
    if ((rc = load_prompts(s, env)))
        goto fail;
    int max_prompt = s->train->max_tokens;
    if (s->eval && s->eval->max_tokens > max_prompt)
        max_prompt = s->eval->max_tokens;
    if (max_prompt + s->max_comp > s->m->cfg.max_seq_len) {
        rc = r1_err_set(R1_EINVAL, "%s: stage '%s': a %d-token prompt plus max_completion_len %d "
                        "exceeds the model's %d positions; shorten the prompts or lower "
                        "grpo.max_completion_len", env->recipe->path, c->name, max_prompt,
                        s->max_comp, s->m->cfg.max_seq_len);
        goto fail;
    }
    s->T_max = max_prompt + s->max_comp - 1;
    s->n_rw = s->g->n_rewards;
    ALLOC(s->rw, s->n_rw);
    ALLOC(s->rw_keys, s->n_rw);
    for (int i = 0; i < s->n_rw; i++) {
        s->rw[i] = r1_reward_find(s->g->rewards[i].name);
        snprintf(s->rw_keys[i], sizeof(s->rw_keys[i]), "rewards/%s", s->g->rewards[i].name);
        if (strcmp(s->g->rewards[i].name, s->g->accuracy_reward) == 0 && s->acc_in_list < 0)
            s->acc_in_list = i;
    }
    s->acc = r1_reward_find(s->g->accuracy_reward);
    s->acc_default = (struct r1_reward_cfg){s->g->accuracy_reward, 1.0f, R1_ANSWER_AUTO, "en", 3,
                                            -1.0f, {0}, NULL, R1_VERDICT_PROBABILITY, 0.5f};
    s->acc_cfg = s->acc_in_list >= 0 ? &s->g->rewards[s->acc_in_list] : &s->acc_default;

    int R = s->draws_max * s->S;
    ALLOC(s->order, s->train->n);
    ALLOC(s->prompt_of, R);
    ALLOC(s->comp, (size_t)R * s->max_comp);
    ALLOC(s->gen_lp, (size_t)R * s->max_comp);
    ALLOC(s->res, R);
    ALLOC(s->rew_each, (size_t)R * (s->n_rw ? s->n_rw : 1));
    ALLOC(s->rew, R);
    ALLOC(s->adv_all, R);
    ALLOC(s->std_all, s->draws_max * s->P);
    ALLOC(s->correct, R);
    ALLOC(s->keep, s->S);
    ALLOC(s->own_req, s->S);
    ALLOC(s->judge_p, R);
    const struct r1_reward_cfg *jc = r1_reward_find_judge(s->g->rewards, s->n_rw);
    if (jc && (rc = r1_judge_open_logged(&s->judge, env, jc, "grpo.rewards", s->judge_name,
                                         s->judge_sha)))
        goto fail;
    if (jc) {
        s->data[s->n_data++] = (struct r1_data_hash){s->judge_name, s->judge_sha};
        snprintf(s->judge_log_name, sizeof(s->judge_log_name), "judge-verdicts:%s.log", c->name);
        s->data[s->n_data++] = (struct r1_data_hash){s->judge_log_name, s->judge_log_sha};
        if ((rc = r1_judge_log_sha256(s->judge, s->judge_log_sha)))
            goto fail;
    }
    ALLOC(s->own_res, s->S);
    ALLOC(s->gather_i, 3 * (size_t)s->S);
    ALLOC(s->old_lp, (size_t)s->S * s->max_comp);
    ALLOC(s->ref_lp, (size_t)s->S * s->max_comp);
    size_t nb = (size_t)s->micro * s->T_max;
    ALLOC(s->tok_b, nb);
    ALLOC(s->pos_b, nb);
    ALLOC(s->seg_b, nb);
    ALLOC(s->tgt_b, nb);
    ALLOC(s->lp_b, nb);
    ALLOC(s->old_b, nb);
    ALLOC(s->ref_b, nb);
    ALLOC(s->adv_b, nb);
    ALLOC(s->w_b, nb);
    for (int i = 0; i < R; i++)
        s->res[i] = (struct r1_gen_result){s->comp + (size_t)i * s->max_comp,
                                           s->gen_lp + (size_t)i * s->max_comp, 0,
                                           R1_FINISH_STOP};
    shuffle_epoch(s);

    struct r1_optim_config oc = c->optim;
    oc.total_steps = s->steps_total * s->g->iterations * s->n_mb; /* updates in the stage */
    if ((rc = r1_model_reserve(s->m, s->micro, s->T_max)) ||
        (rc = r1_optim_create(&s->opt, s->m, &oc)) || (rc = r1_optim_join(s->opt, s->dist)))
        goto fail;
    int slots = s->S < c->gen_slots ? (int)s->S : (int)c->gen_slots;
    if ((rc = r1_generator_create(&s->gen, s->m, s->tok, slots, max_prompt + s->max_comp,
                                  GEN_STEP_TOKENS > slots ? GEN_STEP_TOKENS : slots)))
        goto fail;
    if (s->g->beta > 0) { /* the frozen reference: the stage's starting weights */
        if ((rc = r1_model_create_frozen(&s->ref, &s->m->cfg, s->be)) ||
            (rc = r1_model_set_precision(s->ref, s->m->precision)) ||
            (rc = r1_model_reserve(s->ref, s->micro, s->T_max)))
            goto fail;
        s->ref->logit_scale = s->m->logit_scale;
        s->be->ops->copy(s->be->ctx, s->ref->param_mem, s->m->param_mem, s->m->params.cap);
        r1_model_params_changed(s->ref);
    }
    *state = s;
    return 0;
oom:
    rc = r1_err_set(R1_ENOMEM, "grpo stage '%s': out of memory for its buffers", c->name);
fail:
    grpo_free(s);
    return rc;
}

/* ---- generation and scoring ---------------------------------------------------- */

/* Scores sequence i (of the generation rounds) with every reward; 0 or R1_ENOMEM. */
static int score(struct grpo *s, const struct r1_prompt *p, const struct r1_gen_result *res,
                 double judge, float *each, float *total, char *correct)
{
    int n = res->n;
    if (n > 0 && res->finish == R1_FINISH_STOP && res->tokens[n - 1] == s->stop_id)
        n--; /* the stop token is not text */
    char *text = NULL;
    int rc = r1_tokenizer_decode(s->tok, res->tokens, n, &text, NULL);
    if (rc)
        return rc;
    struct r1_reward_input in = {p->text, text, p->answer, p->meta, res->n, s->max_comp, judge};
    double sum = r1_reward_total(s->g->rewards, s->n_rw, &in, each);
    sum += r1_grpo_overlong_penalty(res->n, s->max_comp, s->g->overlong_buffer,
                                    s->g->overlong_penalty);
    double acc = s->acc_in_list >= 0 && each ? each[s->acc_in_list] : s->acc->fn(&in, s->acc_cfg);
    *total = (float)sum;
    *correct = acc >= 1.0;
    free(text);
    return 0;
}

/* The groups of one draw this rank generates: prompts p ≡ rank (mod world) of P. */
static bool owns_group(const struct grpo *s, int p)
{
    return p % s->world == s->rank;
}

/* The micro-batches of an update this rank runs: the one starting at kept row a. */
static bool owns_micro(const struct grpo *s, int a)
{
    return (a / s->micro) % s->world == s->rank;
}

/* Generates this rank's groups of a draw into their slots of res: request ids (the
 * per-sequence random streams) are the sequences' places in the draw, so every sequence
 * is the one a single process would sample. */
static int generate_draw(struct grpo *s, const int64_t *idx, float temperature, uint64_t seed,
                         struct r1_gen_result *res)
{
    int n = 0;
    for (int i = 0; i < s->S; i++) {
        res[i].n = 0;
        res[i].finish = R1_FINISH_STOP;
        if (!owns_group(s, i / s->G))
            continue;
        const struct r1_prompt *p = &s->train->items[idx[i / s->G]];
        s->own_req[n] = (struct r1_gen_request){p->tokens, p->n_tokens, (uint64_t)i};
        s->own_res[n] = res[i];
        n++;
    }
    struct r1_gen_config gc = {{temperature, 0, s->g->top_p, 0}, s->max_comp, seed,
                               &s->stop_id, s->stop_id >= 0, NULL, 0, s->m->precision};
    int rc = n > 0 ? r1_generate(s->gen, &gc, s->own_req, n, s->own_res, NULL, NULL) : 0;
    for (int i = 0, k = 0; i < s->S && !rc; i++)
        if (owns_group(s, i / s->G))
            res[i] = s->own_res[k++];
    return rc;
}

/* Sums the ranks' parts of draw d (each filled its own groups, zeros elsewhere) so every
 * rank holds the whole draw: completions, their log-probs, lengths, finish reasons,
 * rewards and correctness. */
static int gather_draw(struct grpo *s, int d)
{
    if (s->world <= 1)
        return 0;
    size_t o = (size_t)d * s->S, row = (size_t)s->max_comp, nrw = s->n_rw ? s->n_rw : 1;
    int32_t *gi = s->gather_i;
    for (int i = 0; i < s->S; i++) {
        bool mine = owns_group(s, i / s->G);
        struct r1_gen_result *r = &s->res[o + i];
        if (!mine) {
            memset(r->tokens, 0, row * sizeof(int32_t));
            memset(r->logprobs, 0, row * sizeof(float));
            memset(s->rew_each + (o + i) * nrw, 0, nrw * sizeof(float));
            s->rew[o + i] = 0.0f;
        }
        gi[3 * i] = mine ? r->n : 0;
        gi[3 * i + 1] = mine ? (int32_t)r->finish : 0;
        gi[3 * i + 2] = mine ? s->correct[o + i] : 0;
    }
    int rc;
    if ((rc = r1_dist_sum_i32(s->dist, s->comp + o * row, (int64_t)(s->S * row))) ||
        (rc = r1_dist_sum_f32(s->dist, s->gen_lp + o * row, (int64_t)(s->S * row))) ||
        (rc = r1_dist_sum_f32(s->dist, s->rew_each + o * nrw, (int64_t)(s->S * nrw))) ||
        (rc = r1_dist_sum_f32(s->dist, s->rew + o, s->S)) ||
        (rc = r1_dist_sum_i32(s->dist, gi, 3 * (int64_t)s->S)))
        return rc;
    for (int i = 0; i < s->S; i++) {
        s->res[o + i].n = gi[3 * i];
        s->res[o + i].finish = (enum r1_finish)gi[3 * i + 1];
        s->correct[o + i] = (char)gi[3 * i + 2];
    }
    return 0;
}

/* P(yes) of the judge for this rank's completions of draw d into s->judge_p. */
static int judge_draw(struct grpo *s, int d)
{
    int S = s->S, n = 0, rc = 0;
    const char **q = calloc((size_t)S, sizeof(*q)), **ref = calloc((size_t)S, sizeof(*ref));
    const char **pr = calloc((size_t)S, sizeof(*pr));
    char **texts = calloc((size_t)S, sizeof(*texts));
    int *at = calloc((size_t)S, sizeof(*at));
    double *p = calloc((size_t)S, sizeof(*p));
    if (!q || !ref || !pr || !texts || !at || !p)
        rc = r1_err_set(R1_ENOMEM, "grpo: out of memory");
    for (int k = 0; k < S && !rc; k++) {
        int i = d * S + k;
        if (!owns_group(s, k / s->G))
            continue;
        const struct r1_prompt *pp = &s->train->items[s->prompt_of[i]];
        const struct r1_gen_result *res = &s->res[i];
        int nt = res->n;
        if (nt > 0 && res->finish == R1_FINISH_STOP && res->tokens[nt - 1] == s->stop_id)
            nt--;
        if ((rc = r1_tokenizer_decode(s->tok, res->tokens, nt, &texts[n], NULL)))
            break;
        q[n] = pp->question;
        ref[n] = pp->answer;
        pr[n] = pp->text;
        at[n++] = i;
    }
    const struct r1_reward_cfg *jc = r1_reward_find_judge(s->g->rewards, s->n_rw);
    if (!rc && n > 0)
        rc = r1_judge_completions(s->judge, jc, n, q, ref, pr, (const char *const *)texts, p);
    for (int k = 0; k < n && !rc; k++)
        s->judge_p[at[k]] = p[k];
    for (int k = 0; texts && k < n; k++)
        free(texts[k]);
    free(texts), free(q), free(ref), free(pr), free(at), free(p);
    return rc ? r1_err_wrap(rc, "grpo step %" PRId64 ": judge", s->step + 1) : 0;
}

/* ---- log-probs and the update -------------------------------------------------- */

/* Fills the micro-batch rows of kept sequences [a, b): tokens, positions, targets.
 * Returns the row length T. */
static int build_rows(struct grpo *s, int a, int b)
{
    int T = 1;
    for (int r = a; r < b; r++) {
        int q = s->keep[r];
        const struct r1_prompt *p = &s->train->items[s->prompt_of[q]];
        int L = p->n_tokens + s->res[q].n - 1;
        if (L > T)
            T = L;
    }
    for (int r = a; r < b; r++) {
        int q = s->keep[r], row = r - a;
        const struct r1_prompt *p = &s->train->items[s->prompt_of[q]];
        const int32_t *c = s->res[q].tokens;
        int lp = p->n_tokens, lc = s->res[q].n, L = lp + lc - 1;
        int32_t *tk = s->tok_b + (size_t)row * T, *ps = s->pos_b + (size_t)row * T;
        int32_t *sg = s->seg_b + (size_t)row * T, *tg = s->tgt_b + (size_t)row * T;
        for (int t = 0; t < T; t++) {
            if (t < L) {
                tk[t] = t < lp ? p->tokens[t] : c[t - lp];
                int32_t next = t + 1 < lp ? p->tokens[t + 1] : c[t + 1 - lp];
                tg[t] = t + 1 >= lp ? next : -1;
                ps[t] = t;
                sg[t] = 0;
            } else {
                tk[t] = 0;
                tg[t] = -1;
                ps[t] = 0;
                sg[t] = -1;
            }
        }
    }
    return T;
}

/* Where completion token j of kept sequence r sits in the micro-batch, the sequence
 * being its row `row` of length T: row·T + prompt_len − 1 + j. */
static inline size_t slot_of(const struct grpo *s, int r, int row, int T, int j)
{
    const struct r1_prompt *p = &s->train->items[s->prompt_of[s->keep[r]]];
    return (size_t)row * T + (size_t)(p->n_tokens - 1 + j);
}

/* Log-probs of the kept batch under model m into out (S, max_comp). */
static int batch_logprobs(struct grpo *s, struct r1_model *m, float *out)
{
    for (int a = 0; a < s->S; a += s->micro) {
        if (!owns_micro(s, a)) /* another rank's rows: only it reads them */
            continue;
        int b = a + s->micro, T = build_rows(s, a, b);
        struct r1_batch bt = {s->micro, T, s->tok_b, s->pos_b, s->seg_b, s->tgt_b};
        int rc = r1_model_forward(m, &bt, s->lp_b, NULL);
        if (rc)
            return rc;
        for (int r = a; r < b; r++)
            for (int j = 0; j < s->res[s->keep[r]].n; j++)
                out[(size_t)r * s->max_comp + j] = s->lp_b[slot_of(s, r, r - a, T, j)];
    }
    return 0;
}

struct update_stats {
    struct r1_pg_stats st;
    double loss_sum, grad_norm_sum;
    int64_t train_tokens, updates;
};

static int update_micro(struct grpo *s, int a, int mini, int n_micro, int64_t batch_tokens,
                        bool use_old, const struct r1_pg_cfg *lc,
                        struct r1_pg_stats *stats, struct update_stats *us);

/* One optimizer update on kept rows [a0, a1): this rank's micro-batches, then the sums. */
static int update(struct grpo *s, int a0, int a1, int64_t batch_tokens, bool use_old,
                  struct update_stats *us)
{
    const struct r1_grpo_cfg *g = s->g;
    struct r1_pg_cfg lc = {g->epsilon_low, g->epsilon_high, g->beta, g->entropy_coef};
    struct r1_pg_stats st = {0};
    int n_micro = (a1 - a0) / s->micro;
    r1_model_zero_grad(s->m);
    int rc = 0;
    int64_t tokens_before = us->train_tokens;
    for (int a = a0; a < a1 && !rc; a += s->micro) {
        if (!owns_micro(s, a))
            continue;
        if (a + s->world * s->micro >= a1) /* this rank's last: sums may start in the backward */
            r1_optim_last_backward(s->opt);
        rc = update_micro(s, a, a1 - a0, n_micro, batch_tokens, use_old, &lc, &st, us);
    }
    /* every rank's part of the gradients, losses and statistics, summed */
    double part[6] = {st.loss, (double)st.n_tokens, st.kl, st.entropy, st.clip_low, st.clip_high};
    double tt = (double)(us->train_tokens - tokens_before);
    int sum_rc = r1_optim_sum_grads(s->opt); /* every rank, also one that failed */
    if ((rc = r1_dist_agree(s->dist, rc ? rc : sum_rc)) ||
        (rc = r1_dist_sum_f64(s->dist, part, 6)) || (rc = r1_dist_sum_f64(s->dist, &tt, 1))) {
        r1_model_zero_grad(s->m);
        return rc;
    }
    st.loss = part[0];
    st.n_tokens = (int64_t)part[1];
    st.kl = part[2];
    st.entropy = part[3];
    st.clip_low = part[4];
    st.clip_high = part[5];
    us->train_tokens = tokens_before + (int64_t)tt;
    if ((rc = r1_optim_step(s->opt)))
        return rc;
    us->loss_sum += st.loss;
    us->grad_norm_sum += s->opt->last_grad_norm;
    us->updates++;
    us->st.n_tokens += st.n_tokens;
    us->st.kl += st.kl;
    us->st.entropy += st.entropy;
    us->st.clip_low += st.clip_low;
    us->st.clip_high += st.clip_high;
    return 0;
}

/* One micro-batch of an update, from kept row a: forward, the token loss, backward. */
static int update_micro(struct grpo *s, int a, int mini, int n_micro, int64_t batch_tokens,
                        bool use_old, const struct r1_pg_cfg *lc,
                        struct r1_pg_stats *stats, struct update_stats *us)
{
    const struct r1_grpo_cfg *g = s->g;
    int b = a + s->micro, T = build_rows(s, a, b);
    size_t N = (size_t)s->micro * T;
    int64_t micro_tokens = 0;
    for (int r = a; r < b; r++) {
        int q = s->keep[r];
        if (!(g->mask_truncated && s->res[q].finish == R1_FINISH_LENGTH))
            micro_tokens += s->res[q].n;
    }
    memset(s->w_b, 0, N * sizeof(float));
    for (int r = a; r < b; r++) {
        int q = s->keep[r], n = s->res[q].n;
        bool masked = g->mask_truncated && s->res[q].finish == R1_FINISH_LENGTH;
        struct r1_grpo_norm nm = {masked ? 0 : n, mini, micro_tokens, n_micro, batch_tokens,
                                  s->max_comp};
        float w = masked ? 0.0f : (float)r1_grpo_seq_weight(g->loss_type, &nm);
        for (int j = 0; j < n; j++) {
            size_t k = slot_of(s, r, r - a, T, j);
            s->w_b[k] = w;
            s->adv_b[k] = s->adv_all[q];
            if (use_old)
                s->old_b[k] = s->old_lp[(size_t)r * s->max_comp + j];
            if (s->ref)
                s->ref_b[k] = s->ref_lp[(size_t)r * s->max_comp + j];
        }
    }
    /* the loss and its gradient are made with the forward, chunk by chunk (core/model.h) */
    struct r1_batch bt = {s->micro, T, s->tok_b, s->pos_b, s->seg_b, s->tgt_b};
    struct r1_pg_tokens t = {use_old ? s->old_b : NULL, s->ref ? s->ref_b : NULL, s->adv_b,
                             s->w_b};
    int rc = r1_model_pg_step(s->m, &bt, lc, &t, stats);
    if (rc == R1_ENUMERIC) {
        r1_model_zero_grad(s->m);
        return r1_err_set(R1_ENUMERIC, "grpo: the loss is not finite at step %" PRId64,
                          s->step + 1);
    }
    if (rc)
        return rc;
    us->train_tokens += (int64_t)N;
    return 0;
}

/* ---- one step ------------------------------------------------------------------ */

static int add_samples(struct grpo *s)
{
    free(s->samples);
    s->samples = NULL;
    size_t cap = 0, len = 0;
    int n = (int)(s->g->samples_count < s->S ? s->g->samples_count : s->S);
    for (int r = 0; r < n; r++) {
        int q = s->keep[r];
        const struct r1_prompt *p = &s->train->items[s->prompt_of[q]];
        int nt = s->res[q].n;
        if (nt > 0 && s->res[q].finish == R1_FINISH_STOP && s->res[q].tokens[nt - 1] == s->stop_id)
            nt--;
        char *raw = NULL, *text = NULL;
        size_t raw_len = 0;
        int rc = r1_tokenizer_decode(s->tok, s->res[q].tokens, nt, &raw, &raw_len);
        if (rc)
            return rc;
        text = r1_utf8_clean(raw, raw_len); /* a byte model may emit any bytes */
        free(raw);
        if (!text)
            return r1_err_set(R1_ENOMEM, "grpo: out of memory for a sample line");
        json_t *rw = json_object();
        for (int k = 0; k < s->n_rw; k++)
            json_object_set_new(rw, s->g->rewards[k].name,
                                json_real(s->rew_each[(size_t)q * s->n_rw + k]));
        json_t *o = json_pack("{s:I, s:s, s:s, s:s, s:o, s:f, s:f, s:b, s:s}", "step",
                              (json_int_t)s->step, "prompt", p->text, "completion", text,
                              "answer", p->answer, "rewards", rw, "reward", (double)s->rew[q],
                              "advantage", (double)s->adv_all[q], "correct", s->correct[q],
                              "finish",
                              s->res[q].finish == R1_FINISH_STOP ? "stop" : "length");
        free(text);
        char *line = o ? json_dumps(o, JSON_COMPACT | JSON_PRESERVE_ORDER) : NULL;
        json_decref(o);
        if (!line)
            return r1_err_set(R1_ENOMEM, "grpo: out of memory for a sample line");
        size_t ll = strlen(line);
        if (len + ll + 2 > cap) {
            cap = (len + ll + 2) * 2;
            char *nb = realloc(s->samples, cap);
            if (!nb) {
                free(line);
                return r1_err_set(R1_ENOMEM, "grpo: out of memory for sample lines");
            }
            s->samples = nb;
        }
        memcpy(s->samples + len, line, ll);
        len += ll;
        s->samples[len++] = '\n';
        s->samples[len] = '\0';
        free(line);
    }
    return 0;
}

#define PUT(k, v)                                                                               \
    do {                                                                                        \
        if (out->n < R1_STAGE_MAX_METRICS) {                                                    \
            out->keys[out->n] = (k);                                                            \
            out->values[out->n++] = (v);                                                        \
        }                                                                                       \
    } while (0)

static int grpo_step(void *state, struct r1_stage_metrics *out)
{
    struct grpo *s = state;
    const struct r1_grpo_cfg *g = s->g;
    const int P = s->P, G = s->G, S = s->S;
    double t0 = now_s(), t_gen = 0;
    uint64_t seed = r1_rng_mix64(s->seed ^ r1_rng_mix64((uint64_t)s->step + 1));
    int kept = 0, n_gen = 0, rc;
    int64_t *ix = malloc((size_t)P * sizeof(int64_t));
    if (!ix)
        return r1_err_set(R1_ENOMEM, "grpo: out of memory");
    /* rounds of P prompts × G completions; a group is kept when its rewards differ (or
     * always without dynamic sampling); zero-std groups fill what the rounds left */
    for (int d = 0; d < s->draws_max && kept < P; d++) {
        for (int p = 0; p < P; p++)
            ix[p] = next_prompt(s);
        for (int i = 0; i < S; i++)
            s->prompt_of[d * S + i] = ix[i / G];
        double a = now_s();
        rc = generate_draw(s, ix, g->temperature, r1_rng_mix64(seed + (uint64_t)d),
                           s->res + (size_t)d * S);
        t_gen += now_s() - a;
        if (rc)
            rc = r1_err_wrap(rc, "grpo step %" PRId64 ": generation", s->step + 1);
        if (!rc && s->judge && !(rc = judge_draw(s, d)))
            rc = r1_judge_log_sha256(s->judge, s->judge_log_sha);
        for (int i = d * S; i < (d + 1) * S && !rc; i++)
            if (owns_group(s, (i - d * S) / G))
                rc = score(s, &s->train->items[s->prompt_of[i]], &s->res[i],
                           s->judge ? s->judge_p[i] : NAN, s->rew_each + (size_t)i * s->n_rw,
                           &s->rew[i], &s->correct[i]);
        if ((rc = r1_dist_agree(s->dist, rc)) || (rc = gather_draw(s, d))) {
            free(ix);
            return rc;
        }
        if (s->align && (rc = r1_align_score(s->align, s->step, s->train, s->prompt_of + d * S,
                                             s->res + (size_t)d * S, S, s->rew + (size_t)d * S))) {
            free(ix);
            return rc;
        }
        r1_grpo_advantages(s->rew + (size_t)d * S, P, G, g->scale_rewards,
                           s->adv_all + (size_t)d * S, s->std_all + (size_t)d * P);
        n_gen = (d + 1) * S;
        for (int p = 0; p < P && kept < P; p++) {
            if (g->dynamic_sampling && s->std_all[d * P + p] == 0.0f)
                continue;
            for (int j = 0; j < G; j++)
                s->keep[kept * G + j] = d * S + p * G + j;
            kept++;
        }
    }
    free(ix);
    int kept_varied = kept;
    for (int q = 0; q < n_gen / G && kept < P; q++)
        if (s->std_all[q] == 0.0f) {
            for (int j = 0; j < G; j++)
                s->keep[kept * G + j] = q * G + j;
            kept++;
        }
    double t_train0 = now_s();

    /* the update */
    int64_t batch_tokens = 0;
    for (int r = 0; r < S; r++) {
        int q = s->keep[r];
        if (!(g->mask_truncated && s->res[q].finish == R1_FINISH_LENGTH))
            batch_tokens += s->res[q].n;
    }
    bool use_old = g->iterations > 1 || s->n_mb > 1;
    if ((use_old && (rc = batch_logprobs(s, s->m, s->old_lp))) ||
        (s->ref && (rc = batch_logprobs(s, s->ref, s->ref_lp))))
        return r1_err_wrap(rc, "grpo step %" PRId64, s->step + 1);
    struct update_stats us = {0};
    int mb = S / s->n_mb;
    for (int it = 0; it < g->iterations; it++)
        for (int k = 0; k < s->n_mb; k++)
            if ((rc = update(s, k * mb, (k + 1) * mb, batch_tokens, use_old, &us)))
                return r1_err_wrap(rc, "grpo step %" PRId64, s->step + 1);
    double t_end = now_s();
    s->step++;
    if (s->ref && g->ref_reset_every > 0 && s->step % g->ref_reset_every == 0) {
        s->be->ops->copy(s->be->ctx, s->ref->param_mem, s->m->param_mem, s->m->params.cap);
        r1_model_params_changed(s->ref);
        s->ref_version = s->step;
    }
    free(s->samples);
    s->samples = NULL;
    if (g->samples_every > 0 && s->step % g->samples_every == 0 && (rc = add_samples(s)))
        return rc;

    /* metrics over every generated completion of the step */
    double rsum = 0, rsq = 0, acc = 0, len = 0, trunc = 0, zero_std = 0;
    int len_max = 0;
    for (int i = 0; i < n_gen; i++) {
        rsum += s->rew[i];
        rsq += (double)s->rew[i] * s->rew[i];
        acc += s->correct[i];
        len += s->res[i].n;
        len_max = s->res[i].n > len_max ? s->res[i].n : len_max;
        trunc += s->res[i].finish == R1_FINISH_LENGTH;
    }
    for (int q = 0; q < n_gen / G; q++)
        zero_std += s->std_all[q] == 0.0f;
    double mean = rsum / n_gen, var = rsq / n_gen - mean * mean;
    double ntok = us.st.n_tokens > 0 ? us.st.n_tokens : 1;
    double t_all = t_end - t0;
    s->last_reward = mean;
    s->last_acc = acc / n_gen;
    out->n = 0;
    out->step = s->step;
    out->samples = s->samples;
    PUT("loss", us.loss_sum / (double)us.updates);
    PUT("grad_norm", us.grad_norm_sum / (double)us.updates);
    PUT("lr", s->opt->last_lr);
    PUT("reward", mean);
    PUT("reward_std", sqrt(var > 0 ? var : 0));
    for (int k = 0; k < s->n_rw; k++) {
        double m = 0;
        for (int i = 0; i < n_gen; i++)
            m += s->rew_each[(size_t)i * s->n_rw + k];
        PUT(s->rw_keys[k], m / n_gen);
    }
    if (s->align) {
        double rm_mean, general, safety;
        r1_align_take_stats(s->align, &rm_mean, &general, &safety);
        PUT("rewards/rm", rm_mean);
        PUT("general_frac", general);
        if (safety >= 0)
            PUT("rewards/safety", safety);
    }
    PUT("accuracy", acc / n_gen);
    PUT("frac_reward_zero_std", zero_std / (n_gen / G));
    PUT("completion_len", len / n_gen);
    PUT("completion_len_max", len_max);
    PUT("truncated", trunc / n_gen);
    PUT("kl", us.st.kl / ntok);
    PUT("entropy", us.st.entropy / ntok);
    PUT("clip_low", us.st.clip_low / ntok);
    PUT("clip_high", us.st.clip_high / ntok);
    if (g->dynamic_sampling) {
        PUT("draws", n_gen / S);
        PUT("groups_varied", kept_varied);
    }
    PUT("gen_tokens_per_s", t_gen > 0 ? len / t_gen : 0);
    PUT("train_tokens_per_s", t_end > t_train0 ? us.train_tokens / (t_end - t_train0) : 0);
    PUT("gen_share", t_all > 0 ? t_gen / t_all : 0);
    PUT("step_s", t_all);
    s->last = *out;
    return 0;
}

/* ---- evaluation ---------------------------------------------------------------- */

static int grpo_evaluate(void *state, struct r1_stage_metrics *out)
{
    struct grpo *s = state;
    out->n = 0;
    out->samples = NULL;
    if (!s->eval)
        return 0;
    /* the same random streams at every evaluation, so changes are the model's */
    struct r1_eval_spec sp = {s->eval, (int)s->g->eval_samples, s->g->eval_temperature,
                              s->g->top_p, s->max_comp, r1_rng_mix64(s->seed ^ 0x6576616cull),
                              s->g->rewards, s->n_rw, s->g->accuracy_reward, s->m->precision,
                              s->dist, NULL, (int)s->cfg->gen_slots};
    return r1_eval_generate(s->m, s->tok, &sp, out);
}

/* ---- checkpoint state ---------------------------------------------------------- */

static const char *const files_ref[] = {"config.json", "model.safetensors",
                                        "optimizer.safetensors", "trainer_state.json",
                                        "ref_model.safetensors"};

static int grpo_save(void *state, const char *dir, const char *const **files, int *n_files)
{
    struct grpo *s = state;
    char path[4200];
    int rc = r1_stage_save_weights(s->m, s->tok, s->opt, dir);
    if (rc)
        return rc;
    bool with_ref = s->ref && s->ref_version > 0;
    if (with_ref) { /* a reset reference is not the stage's start: it travels along */
        snprintf(path, sizeof(path), "%s/ref_model.safetensors", dir);
        if ((rc = r1_model_save_safetensors(s->ref, path, R1_F32)))
            return rc;
    }
    char seed[32];
    snprintf(seed, sizeof(seed), "%016" PRIx64, s->seed);
    rc = r1_stage_write_state(
        dir, json_pack("{s:s, s:I, s:I, s:I, s:I, s:I, s:s, s:s}", "format", "r1-grpo-state-1",
                       "step", (json_int_t)s->step, "steps_total", (json_int_t)s->steps_total,
                       "prompt_epoch", (json_int_t)s->epoch, "prompt_cursor",
                       (json_int_t)s->cursor, "ref_version", (json_int_t)s->ref_version,
                       "data_sha256", s->train->sha256, "seed_hex", seed));
    if (rc)
        return rc;
    *files = files_ref;
    *n_files = with_ref ? 5 : 4;
    return 0;
}

static int grpo_load(void *state, const char *dir)
{
    struct grpo *s = state;
    char path[4200];
    int rc = r1_stage_load_weights(s->m, s->opt, dir);
    if (rc)
        return rc;
    snprintf(path, sizeof(path), "%s/trainer_state.json", dir);
    json_error_t e;
    json_t *o = json_load_file(path, 0, &e);
    json_int_t step = -1, epoch = -1, cursor = -1, refv = -1;
    const char *sha = NULL, *fmt = NULL;
    if (!o || json_unpack(o, "{s:s, s:I, s:I, s:I, s:I, s:s}", "format", &fmt, "step", &step,
                          "prompt_epoch", &epoch, "prompt_cursor", &cursor, "ref_version", &refv,
                          "data_sha256", &sha) != 0 ||
        strcmp(fmt, "r1-grpo-state-1") != 0 || epoch < 0 || cursor < 0 ||
        cursor > s->train->n || refv < 0 || refv > step) {
        json_decref(o);
        return r1_err_set(R1_EFORMAT, "%s: missing or malformed grpo trainer state; resume from "
                          "an earlier checkpoint", path);
    }
    if (strcmp(sha, s->train->sha256) != 0) {
        json_decref(o);
        return r1_err_set(R1_EINVAL, "%s: the prompts changed since this checkpoint; restore "
                          "the data the run started with", path);
    }
    json_decref(o);
    s->step = step;
    s->epoch = epoch;
    s->cursor = cursor;
    s->ref_version = refv;
    shuffle_epoch(s);
    if (s->ref && refv > 0) {
        snprintf(path, sizeof(path), "%s/ref_model.safetensors", dir);
        if ((rc = r1_model_load_safetensors(s->ref, path)))
            return rc;
    }
    return 0;
}

static void grpo_progress(const void *state, int64_t *done, int64_t *total)
{
    const struct grpo *s = state;
    *done = s->step;
    *total = s->steps_total;
}

static bool grpo_finished(const void *state)
{
    const struct grpo *s = state;
    return s->step >= s->steps_total;
}

static void grpo_summary(const void *state, char *buf, size_t cap)
{
    const struct grpo *s = state;
    snprintf(buf, cap, "%s: step %" PRId64 " of %" PRId64 ", reward %.4f, accuracy %.3f",
             s->cfg->name, s->step, s->steps_total, s->last_reward, s->last_acc);
}

static const struct r1_data_hash *grpo_data(const void *state, int *n)
{
    const struct grpo *s = state;
    *n = s->n_data;
    return s->data;
}

static void grpo_free(void *state)
{
    struct grpo *s = state;
    if (!s)
        return;
    if (s->m)
        s->m->logit_scale = 1.0f;
    r1_generator_free(s->gen);
    r1_align_free(s->align);
    r1_optim_free(s->opt);
    r1_model_free(s->ref);
    r1_prompt_set_free(s->train);
    r1_prompt_set_free(s->eval);
    free(s->rw);
    free(s->rw_keys);
    free(s->order);
    free(s->prompt_of);
    free(s->comp);
    free(s->gen_lp);
    free(s->res);
    free(s->rew_each);
    free(s->rew);
    free(s->adv_all);
    free(s->std_all);
    free(s->correct);
    free(s->keep);
    free(s->own_req);
    r1_judge_free(s->judge);
    free(s->judge_p);
    free(s->own_res);
    free(s->gather_i);
    free(s->old_lp);
    free(s->ref_lp);
    free(s->tok_b);
    free(s->pos_b);
    free(s->seg_b);
    free(s->tgt_b);
    free(s->lp_b);
    free(s->old_b);
    free(s->ref_b);
    free(s->adv_b);
    free(s->w_b);
    free(s->samples);
    free(s);
}

static struct r1_optim *grpo_optim(void *state)
{
    return ((struct grpo *)state)->opt;
}

const struct r1_stage_ops r1_grpo_stage_ops = {
    "grpo", grpo_validate, grpo_init, grpo_step, grpo_save, grpo_load, grpo_finished,
    grpo_progress, grpo_summary, grpo_evaluate, grpo_data, grpo_free, grpo_optim,
};
