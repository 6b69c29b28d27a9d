/* align.c - general prompts and the reward model of the align stage (see align.h). */
#include "stages/align.h"

#include <inttypes.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "core/err.h"
#include "core/sha256.h"
#include "stages/reward_model.h"
#include "stages/rewards/rewards.h"

struct r1_align {
    const struct r1_align_cfg *cfg;
    const struct r1_tokenizer *tok; /* the policy's, to decode completions */
    struct r1_model *rm;
    struct r1_tokenizer *rm_tok;
    struct r1_rm_scorer *scorer;
    /* the pointwise safety model (align.safety_model), NULL without one */
    struct r1_model *sm;
    struct r1_tokenizer *sm_tok;
    struct r1_rm_scorer *safety;
    double safety_sum;
    int64_t safety_n;
    int64_t n_reasoning; /* items [0, n_reasoning) of the set come from data.* */
    struct r1_data_hash data;
    char data_sha[R1_SHA256_HEX];
    int n_data;
    /* scratch of one scoring call */
    const char **prompts, **texts;
    char **owned;
    int *which;
    float *scores;
    int cap;
    int32_t stop_id;
    double rm_sum;
    int64_t rm_n, seen, general;
};

static int load_general(struct r1_align *a, const struct r1_stage_env *env,
                        struct r1_prompt_set *train, int limit)
{
    const struct r1_stage_cfg *c = &env->recipe->stages[env->index];
    const struct r1_align_cfg *ac = &c->align;
    if (!ac->general_path && !ac->general_generator)
        return 0;
    struct r1_prompt_spec sp = {ac->general_path, ac->general_generator, ac->general_size,
                                (uint64_t)env->recipe->seed + (uint64_t)env->index + 0x9e37,
                                R1_SPLIT_TRAIN, c->data.prompt_field, c->data.answer_field,
                                c->data.template_, limit, env->chat_template,
                                env->tok->chat_template};
    struct r1_prompt_set *gen = NULL;
    int rc = r1_prompt_set_load(&gen, &sp, env->tok);
    if (rc)
        return r1_err_wrap(rc, "stage '%s' general prompts", c->name);
    struct r1_prompt *items = realloc(train->items, (size_t)(train->n + gen->n) * sizeof(*items));
    if (!items) {
        r1_prompt_set_free(gen);
        return r1_err_set(R1_ENOMEM, "align: out of memory for %" PRId64 " general prompts",
                          gen->n);
    }
    train->items = items;
    for (int64_t i = 0; i < gen->n; i++) {
        struct r1_prompt *p = &gen->items[i];
        p->answer[0] = '\0'; /* judged by the reward model alone */
        items[train->n + i] = *p;
    }
    a->n_reasoning = train->n;
    train->n += gen->n;
    if (gen->max_tokens > train->max_tokens)
        train->max_tokens = gen->max_tokens;
    /* one hash over both sources, so a resume notices either changing */
    char both[2 * R1_SHA256_HEX];
    snprintf(both, sizeof(both), "%s%s", train->sha256, gen->sha256);
    r1_sha256_bytes(train->sha256, both, strlen(both));
    const char *slash = ac->general_path ? strrchr(ac->general_path, '/') : NULL;
    a->data.name = ac->general_path ? (slash ? slash + 1 : ac->general_path)
                                    : ac->general_generator;
    memcpy(a->data_sha, gen->sha256, R1_SHA256_HEX);
    a->data.sha256 = a->data_sha;
    a->n_data = 1;
    gen->n = 0; /* the items moved to train */
    r1_prompt_set_free(gen);
    return 0;
}

/* A score-head model from src and its scorer, reading texts as the reward_model stage that
 * trained it did (its template and seq_len); nothing when src names none. */
static int open_scorer(const struct r1_stage_env *env, const struct r1_model_source *src,
                       const char *key, struct r1_model **m, struct r1_tokenizer **tok,
                       struct r1_rm_scorer **scorer)
{
    const struct r1_recipe *r = env->recipe;
    const struct r1_stage_cfg *c = &r->stages[env->index];
    if (!src->spec)
        return 0;
    int rc = env->open_model(env->ctx, src, m, tok);
    if (rc)
        return rc;
    if (!r1_model_has_score_head(*m))
        return r1_err_set(R1_EINVAL, "%s: stage '%s' %s '%s' has no score head; train one with "
                          "a reward_model stage", r->path, c->name, key, src->spec);
    const struct r1_stage_cfg *rs = src->kind == R1_SOURCE_STAGE ? &r->stages[src->stage] : NULL;
    int max_len = rs ? (int)rs->seq_len : (*m)->cfg.max_seq_len;
    if (max_len > (*m)->cfg.max_seq_len)
        max_len = (*m)->cfg.max_seq_len;
    return r1_rm_scorer_create(scorer, *m, *tok, rs ? rs->data.template_ : NULL, max_len);
}

int r1_align_create(struct r1_align **out, const struct r1_stage_env *env,
                    struct r1_prompt_set *train, int limit)
{
    const struct r1_recipe *r = env->recipe;
    const struct r1_stage_cfg *c = &r->stages[env->index];
    const struct r1_align_cfg *ac = &c->align;
    struct r1_align *a = calloc(1, sizeof(*a));
    if (!a)
        return r1_err_set(R1_ENOMEM, "align: out of memory");
    a->cfg = ac;
    a->tok = env->tok;
    a->stop_id = env->model->cfg.eos_id;
    a->n_reasoning = train->n;
    int rc = load_general(a, env, train, limit);
    if (rc)
        goto fail;
    if ((rc = open_scorer(env, &ac->reward_model, "align.reward_model", &a->rm, &a->rm_tok,
                          &a->scorer)))
        goto fail;
    if ((rc = open_scorer(env, &ac->safety_model, "align.safety_model", &a->sm, &a->sm_tok,
                          &a->safety)))
        goto fail;
    *out = a;
    return 0;
fail:
    r1_align_free(a);
    return rc;
}

void r1_align_free(struct r1_align *a)
{
    if (!a)
        return;
    r1_rm_scorer_free(a->scorer);
    r1_model_free(a->rm);
    r1_tokenizer_free(a->rm_tok);
    r1_rm_scorer_free(a->safety);
    r1_model_free(a->sm);
    r1_tokenizer_free(a->sm_tok);
    free(a->prompts);
    free(a->texts);
    free(a->owned);
    free(a->which);
    free(a->scores);
    free(a);
}

static int reserve(struct r1_align *a, int n)
{
    if (n <= a->cap)
        return 0;
    free(a->prompts);
    free(a->texts);
    free(a->owned);
    free(a->which);
    free(a->scores);
    a->prompts = calloc((size_t)n, sizeof(*a->prompts));
    a->texts = calloc((size_t)n, sizeof(*a->texts));
    a->owned = calloc((size_t)n, sizeof(*a->owned));
    a->which = calloc((size_t)n, sizeof(*a->which));
    a->scores = calloc((size_t)n, sizeof(*a->scores));
    a->cap = n;
    if (!a->prompts || !a->texts || !a->owned || !a->which || !a->scores) {
        a->cap = 0;
        return r1_err_set(R1_ENOMEM, "align: out of memory for %d scores", n);
    }
    return 0;
}

/* The part of a completion the reward model reads (a pointer into text). */
static const char *rm_view(const char *text, enum r1_rm_scope scope)
{
    if (scope == R1_RM_SCOPE_FULL)
        return text;
    const char *end = NULL;
    for (const char *p = strstr(text, "</think>"); p; p = strstr(p + 1, "</think>"))
        end = p;
    if (!end)
        return text;
    end += strlen("</think>");
    while (*end == ' ' || *end == '\n' || *end == '\t' || *end == '\r')
        end++;
    return end;
}

/* The completion of res as the reward models read it (malloc'd): decoded, stop token
 * dropped, with what the template put before it (r1_reward_effective_completion). */
static char *completion_text(const struct r1_align *a, const struct r1_prompt *p,
                             const struct r1_gen_result *g, int *rc)
{
    int nt = g->n;
    if (nt > 0 && g->finish == R1_FINISH_STOP && g->tokens[nt - 1] == a->stop_id)
        nt--; /* the stop token is not text */
    char *text = NULL;
    if ((*rc = r1_tokenizer_decode(a->tok, g->tokens, nt, &text, NULL)))
        return NULL;
    struct r1_reward_input in = {p->text, text, "", p->meta, g->n, 0, NAN};
    char *eff = r1_reward_effective_completion(&in);
    free(text);
    if (!eff)
        *rc = r1_err_set(R1_ENOMEM, "align: out of memory");
    return eff;
}

/* The safety reward of every completion: safety_weight × σ(score) of the whole text. */
static int score_safety(struct r1_align *a, const struct r1_prompt_set *set,
                        const int64_t *prompt_of, const struct r1_gen_result *res, int n,
                        float *rew)
{
    int rc = reserve(a, n), k = 0;
    for (int i = 0; i < n && !rc; i++) {
        const struct r1_prompt *p = &set->items[prompt_of[i]];
        char *eff = completion_text(a, p, &res[i], &rc);
        if (!eff)
            break;
        a->owned[k] = eff;
        a->texts[k] = eff; /* all of it: the chain of thought is judged too */
        a->prompts[k] = p->question;
        a->which[k++] = i;
    }
    if (!rc)
        rc = r1_rm_scorer_score(a->safety, k, a->prompts, a->texts, a->scores);
    for (int j = 0; j < k; j++) {
        if (!rc) {
            double x = a->scores[j];
            double safe = x >= 0 ? 1.0 / (1.0 + exp(-x)) : exp(x) / (1.0 + exp(x));
            rew[a->which[j]] += (float)(a->cfg->safety_weight * safe);
            a->safety_sum += safe;
            a->safety_n++;
        }
        free(a->owned[j]);
        a->owned[j] = NULL;
    }
    return rc;
}

int r1_align_score(struct r1_align *a, int64_t step, const struct r1_prompt_set *set,
                   const int64_t *prompt_of, const struct r1_gen_result *res, int n, float *rew)
{
    int k = 0, rc = 0;
    if (a->safety && n > 0 && (rc = score_safety(a, set, prompt_of, res, n, rew)))
        return r1_err_wrap(rc, "align: safety scores at step %" PRId64, step + 1);
    for (int i = 0; i < n; i++)
        k += prompt_of[i] >= a->n_reasoning;
    a->seen += n;
    a->general += k;
    if (k == 0 || !a->scorer || step < a->cfg->rm_start_step)
        return 0;
    if ((rc = reserve(a, k)))
        return rc;
    k = 0;
    for (int i = 0; i < n && !rc; i++) {
        if (prompt_of[i] < a->n_reasoning)
            continue;
        const struct r1_prompt *p = &set->items[prompt_of[i]];
        char *eff = completion_text(a, p, &res[i], &rc);
        if (!eff)
            break;
        a->owned[k] = eff;
        a->texts[k] = rm_view(eff, a->cfg->rm_scope);
        a->prompts[k] = p->question;
        a->which[k++] = i;
    }
    if (!rc)
        rc = r1_rm_scorer_score(a->scorer, k, a->prompts, a->texts, a->scores);
    for (int j = 0; j < k; j++) {
        if (!rc) {
            rew[a->which[j]] += a->cfg->rm_weight * a->scores[j];
            a->rm_sum += a->scores[j];
            a->rm_n++;
        }
        free(a->owned[j]);
        a->owned[j] = NULL;
    }
    return rc ? r1_err_wrap(rc, "align: reward model scores at step %" PRId64, step + 1) : 0;
}

void r1_align_take_stats(struct r1_align *a, double *rm_mean, double *general_frac,
                         double *safety_mean)
{
    *safety_mean = a->safety_n ? a->safety_sum / (double)a->safety_n : -1;
    a->safety_sum = 0;
    a->safety_n = 0;
    *rm_mean = a->rm_n ? a->rm_sum / (double)a->rm_n : 0;
    *general_frac = a->seen ? (double)a->general / (double)a->seen : 0;
    a->rm_sum = 0;
    a->rm_n = 0;
    a->seen = 0;
    a->general = 0;
}

const struct r1_data_hash *r1_align_data(const struct r1_align *a, int *n)
{
    *n = a->n_data;
    return &a->data;
}
