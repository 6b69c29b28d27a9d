/* evaluate.c - held-out accuracy by sampling (see evaluate.h). */
#include "stages/evaluate.h"

#include <inttypes.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "core/err.h"
#include "core/generate.h"
#include "stages/rewards/rewards.h"

#define EVAL_SLOTS_MAX 64
#define EVAL_STEP_TOKENS 2048

static void put(struct r1_stage_metrics *out, const char *key, double v)
{
    if (out->n < R1_STAGE_MAX_METRICS) {
        out->keys[out->n] = key;
        out->values[out->n++] = v;
    }
}

int r1_eval_prompts_load(struct r1_prompt_set **out, const struct r1_stage_env *env,
                         uint64_t seed, int limit)
{
    const struct r1_stage_cfg *c = &env->recipe->stages[env->index];
    *out = NULL;
    if (!c->data.eval_path && !(c->data.generator && c->data.eval_size > 0))
        return 0;
    struct r1_prompt_spec ev = {c->data.eval_path, c->data.eval_path ? NULL : c->data.generator,
                                c->data.eval_size, seed, R1_SPLIT_EVAL, c->data.prompt_field,
                                c->data.answer_field, c->data.template_, limit,
                                env->chat_template};
    int rc = r1_prompt_set_load(out, &ev, env->tok);
    return rc ? r1_err_wrap(rc, "stage '%s' evaluation prompts", c->name) : 0;
}

int r1_eval_generate(struct r1_model *m, const struct r1_tokenizer *tok,
                     const struct r1_eval_spec *sp, struct r1_stage_metrics *out)
{
    const struct r1_prompt_set *set = sp->set;
    const char *acc_name = sp->accuracy_reward ? sp->accuracy_reward : "accuracy";
    const struct r1_reward_def *acc = r1_reward_find(acc_name);
    if (!acc)
        return r1_err_set(R1_EINVAL, "evaluation: unknown accuracy reward '%s'", acc_name);
    struct r1_reward_cfg acc_default = {(char *)acc_name, 1.0f, R1_ANSWER_AUTO, "en", 3, -1.0f};
    const struct r1_reward_cfg *acc_cfg = &acc_default;
    for (int k = 0; k < sp->n_rewards; k++)
        if (strcmp(sp->rewards[k].name, acc_name) == 0) {
            acc_cfg = &sp->rewards[k];
            break;
        }
    int K = sp->samples, L = sp->max_completion_len;
    int64_t n = set->n * K;
    if (n > INT32_MAX / 2)
        return r1_err_set(R1_EINVAL, "evaluation: %" PRId64 " samples are too many", n);
    int32_t stop = m->cfg.eos_id;
    int32_t *tokens = malloc((size_t)n * L * sizeof(int32_t));
    float *lps = malloc((size_t)n * L * sizeof(float));
    struct r1_gen_result *res = calloc((size_t)n, sizeof(*res));
    struct r1_gen_request *req = calloc((size_t)n, sizeof(*req));
    struct r1_generator *gen = NULL;
    int rc = 0;
    if (!tokens || !lps || !res || !req) {
        rc = r1_err_set(R1_ENOMEM, "evaluation: out of memory for %" PRId64 " samples", n);
        goto out;
    }
    for (int64_t i = 0; i < n; i++) {
        const struct r1_prompt *p = &set->items[i / K];
        req[i] = (struct r1_gen_request){p->tokens, p->n_tokens, (uint64_t)i};
        res[i] = (struct r1_gen_result){tokens + (size_t)i * L, lps + (size_t)i * L, 0,
                                        R1_FINISH_STOP};
    }
    int slots = n < EVAL_SLOTS_MAX ? (int)n : EVAL_SLOTS_MAX;
    if (slots < 1)
        slots = 1;
    float saved_scale = m->logit_scale;
    m->logit_scale = 1.0f;
    rc = r1_generator_create(&gen, m, tok, slots, set->max_tokens + L,
                             EVAL_STEP_TOKENS > slots ? EVAL_STEP_TOKENS : slots);
    if (!rc) {
        struct r1_gen_config gc = {{sp->temperature, 0, sp->top_p, 0}, L, sp->seed, &stop,
                                   stop >= 0, NULL, 0};
        rc = r1_generate(gen, &gc, req, (int)n, res, NULL, NULL);
    }
    m->logit_scale = saved_scale;
    if (rc)
        goto out;
    double correct = 0, reward = 0, len = 0;
    for (int64_t i = 0; i < n; i++) {
        const struct r1_prompt *p = &set->items[i / K];
        int nt = res[i].n;
        if (nt > 0 && res[i].finish == R1_FINISH_STOP && res[i].tokens[nt - 1] == stop)
            nt--; /* the stop token is not text */
        char *text = NULL;
        if ((rc = r1_tokenizer_decode(tok, res[i].tokens, nt, &text, NULL)))
            goto out;
        struct r1_reward_input in = {p->text, text, p->answer, p->meta, res[i].n, L};
        reward += r1_reward_total(sp->rewards, sp->n_rewards, &in, NULL);
        double a = acc->fn(&in, acc_cfg);
        correct += isfinite(a) && a >= 1.0;
        len += res[i].n;
        free(text);
    }
    put(out, "eval/accuracy", n ? correct / (double)n : 0);
    if (sp->n_rewards > 0)
        put(out, "eval/reward", n ? reward / (double)n : 0);
    put(out, "eval/completion_len", n ? len / (double)n : 0);
    put(out, "eval/samples", (double)n);
out:
    r1_generator_free(gen);
    free(tokens);
    free(lps);
    free(res);
    free(req);
    return rc;
}
