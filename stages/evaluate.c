/* evaluate.c - held-out accuracy by sampling, and the pass@1 / maj@n report of r1 eval
 * (see evaluate.h). */
#include "stages/evaluate.h"

#include <inttypes.h>
#include <math.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>

#include "core/err.h"
#include "core/generate.h"
#include "stages/judge.h"
#include "stages/rewards/rewards.h"

#define EVAL_SLOTS 64 /* sequences generated together, unless the spec says */
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
                                env->chat_template, env->tok->chat_template};
    int rc = r1_prompt_set_load(out, &ev, env->tok);
    return rc ? r1_err_wrap(rc, "stage '%s' evaluation prompts", c->name) : 0;
}

void r1_eval_completions_free(struct r1_eval_completion *c, int64_t n)
{
    for (int64_t i = 0; c && i < n; i++)
        free(c[i].text);
    free(c);
}

int r1_eval_complete(struct r1_model *m, const struct r1_tokenizer *tok,
                     const struct r1_eval_spec *sp, struct r1_eval_completion **out)
{
    const struct r1_prompt_set *set = sp->set;
    *out = NULL;
    int K = sp->samples, L = sp->max_completion_len;
    if (K < 1 || L < 1)
        return r1_err_set(R1_EINVAL, "evaluation: %d samples of %d tokens", K, L);
    int64_t n = set->n * K;
    if (n > INT32_MAX / 2 || (int64_t)L * n > INT32_MAX)
        return r1_err_set(R1_EINVAL, "evaluation: %" PRId64 " samples of %d tokens are too many",
                          n, L);
    int32_t stop = m->cfg.eos_id;
    int32_t *tokens = malloc((size_t)(n ? n : 1) * L * sizeof(int32_t));
    float *lps = malloc((size_t)(n ? n : 1) * L * sizeof(float));
    struct r1_gen_result *res = calloc((size_t)(n ? n : 1), sizeof(*res));
    struct r1_gen_request *req = calloc((size_t)(n ? n : 1), sizeof(*req));
    struct r1_eval_completion *c = calloc((size_t)(n ? n : 1), sizeof(*c));
    struct r1_generator *gen = NULL;
    int rc = 0;
    if (!tokens || !lps || !res || !req || !c) {
        rc = r1_err_set(R1_ENOMEM, "evaluation: out of memory for %" PRId64 " samples", n);
        goto out;
    }
    /* this rank's prompts (all without a job); request ids are the sequences' places in the
     * whole set, so each sample is the one a single process draws */
    int rank = sp->dist ? sp->dist->rank : 0, world = sp->dist ? sp->dist->world : 1;
    int64_t mine = 0;
    for (int64_t i = 0; i < n; i++) {
        if ((i / K) % world != rank)
            continue;
        const struct r1_prompt *p = &set->items[i / K];
        req[mine] = (struct r1_gen_request){p->tokens, p->n_tokens, (uint64_t)i};
        res[mine] = (struct r1_gen_result){tokens + (size_t)i * L, lps + (size_t)i * L, 0,
                                           R1_FINISH_STOP};
        mine++;
    }
    int cap = sp->slots > 0 ? sp->slots : EVAL_SLOTS;
    int slots = n < cap ? (int)n : cap;
    if (slots < 1)
        slots = 1;
    float saved_scale = m->logit_scale;
    m->logit_scale = 1.0f;
    rc = r1_generator_create(&gen, m, tok, slots, set->max_tokens + L,
                             EVAL_STEP_TOKENS > slots ? EVAL_STEP_TOKENS : slots);
    if (!rc && mine > 0) {
        struct r1_gen_config gc = {{sp->temperature, 0, sp->top_p, 0}, L, sp->seed, &stop,
                                   stop >= 0, NULL, 0, sp->weights};
        rc = r1_generate(gen, &gc, req, (int)mine, res, NULL, NULL);
    }
    m->logit_scale = saved_scale;
    for (int64_t k = 0; !rc && k < mine; k++) {
        int64_t i = (int64_t)req[k].stream;
        int nt = res[k].n;
        if (nt > 0 && res[k].finish == R1_FINISH_STOP && res[k].tokens[nt - 1] == stop)
            nt--; /* the stop token is not text */
        c[i].tokens = res[k].n;
        c[i].finish = res[k].finish;
        rc = r1_tokenizer_decode(tok, res[k].tokens, nt, &c[i].text, NULL);
    }
out:
    r1_generator_free(gen);
    free(tokens);
    free(lps);
    free(res);
    free(req);
    if (rc)
        r1_eval_completions_free(c, n);
    else
        *out = c;
    return rc;
}

int r1_eval_generate(struct r1_model *m, const struct r1_tokenizer *tok,
                     const struct r1_eval_spec *sp, struct r1_stage_metrics *out)
{
    const struct r1_prompt_set *set = sp->set;
    const char *acc_name = sp->accuracy_reward ? sp->accuracy_reward : "accuracy";
    const struct r1_reward_def *acc = r1_reward_find(acc_name);
    if (!acc)
        return r1_err_set(R1_EINVAL, "evaluation: unknown accuracy reward '%s'", acc_name);
    struct r1_reward_cfg acc_default = {(char *)acc_name, 1.0f, R1_ANSWER_AUTO, "en", 3, -1.0f,
                                        {0}, NULL, R1_VERDICT_PROBABILITY, 0.5f};
    const struct r1_reward_cfg *acc_cfg = &acc_default;
    for (int k = 0; k < sp->n_rewards; k++)
        if (strcmp(sp->rewards[k].name, acc_name) == 0) {
            acc_cfg = &sp->rewards[k];
            break;
        }
    int K = sp->samples, L = sp->max_completion_len;
    int64_t n = set->n * K;
    struct r1_eval_completion *c = NULL;
    int rc = r1_eval_complete(m, tok, sp, &c);
    if (rc)
        return rc;
    double correct = 0, reward = 0, len = 0;
    for (int64_t i = 0; i < n; i++) {
        if (!c[i].text) /* another rank's sample */
            continue;
        const struct r1_prompt *p = &set->items[i / K];
        struct r1_reward_input in = {p->text, c[i].text, p->answer, p->meta, c[i].tokens, L, NAN};
        reward += r1_reward_total(sp->rewards, sp->n_rewards, &in, NULL);
        double a = acc->fn(&in, acc_cfg);
        correct += isfinite(a) && a >= 1.0;
        len += c[i].tokens;
    }
    r1_eval_completions_free(c, n);
    double sums[3] = {correct, reward, len};
    if ((rc = r1_dist_sum_f64(sp->dist, sums, 3)))
        return rc;
    correct = sums[0];
    reward = sums[1];
    len = sums[2];
    put(out, "eval/accuracy", n ? correct / (double)n : 0);
    if (sp->n_rewards > 0)
        put(out, "eval/reward", n ? reward / (double)n : 0);
    put(out, "eval/completion_len", n ? len / (double)n : 0);
    put(out, "eval/samples", (double)n);
    return 0;
}

int r1_eval_majority(const char *const *answers, int n)
{
    int best = -1, best_votes = 0;
    for (int i = 0; i < n; i++) {
        if (!answers[i] || !answers[i][0])
            continue;
        bool seen = false; /* counted already with an earlier, equal answer */
        for (int j = 0; j < i && !seen; j++)
            seen = answers[j] && answers[j][0] && r1_answers_equal(answers[j], answers[i]);
        if (seen)
            continue;
        int votes = 1;
        for (int j = i + 1; j < n; j++)
            votes += answers[j] && answers[j][0] && r1_answers_equal(answers[j], answers[i]);
        if (votes > best_votes) { /* strictly more: a tie keeps the group seen first */
            best = i;
            best_votes = votes;
        }
    }
    return best;
}

void r1_eval_report_free(struct r1_eval_report *r)
{
    if (!r)
        return;
    for (int64_t i = 0; r->items && i < r->n_items; i++) {
        for (int k = 0; r->items[i].samples && k < r->n; k++) {
            free(r->items[i].samples[k].completion);
            free(r->items[i].samples[k].answer);
        }
        free(r->items[i].samples);
    }
    free(r->items);
    free(r);
}

/* The answer of one completion (effective completion, as the accuracy reward reads it). */
static int extract(const struct r1_reward_input *in, enum r1_answer_from from, char **out)
{
    *out = NULL;
    char *text = r1_reward_effective_completion(in);
    char *ans = text ? malloc(strlen(text) + 1) : NULL;
    if (!ans) {
        free(text);
        return r1_err_set(R1_ENOMEM, "evaluation: out of memory extracting an answer");
    }
    if (r1_extract_answer(text, from, ans, strlen(text) + 1) && ans[0])
        *out = ans;
    else
        free(ans);
    free(text);
    return 0;
}

int r1_eval_run(struct r1_eval_report **out, struct r1_model *m, const struct r1_tokenizer *tok,
                const struct r1_eval_spec *sp, double threshold, enum r1_answer_from from)
{
    const struct r1_prompt_set *set = sp->set;
    *out = NULL;
    int rc = r1_reward_check_list(sp->rewards, sp->n_rewards, "reward");
    if (rc)
        return rc;
    int K = sp->samples;
    struct r1_eval_completion *c = NULL;
    double *jp = NULL; /* P(yes) of every sample, with a judge */
    struct r1_eval_report *r = calloc(1, sizeof(*r));
    const char **answers = calloc((size_t)K, sizeof(*answers));
    if (!r || !answers || !(r->items = calloc((size_t)(set->n ? set->n : 1), sizeof(*r->items)))) {
        rc = r1_err_set(R1_ENOMEM, "evaluation: out of memory for %" PRId64 " items", set->n);
        goto out;
    }
    r->n_items = set->n;
    r->n = K;
    if ((rc = r1_eval_complete(m, tok, sp, &c)))
        goto out;
    const struct r1_reward_cfg *jc = r1_reward_find_judge(sp->rewards, sp->n_rewards);
    if (sp->judge && jc) {
        int64_t n = set->n * K;
        const char **q = calloc((size_t)(n ? n : 1), sizeof(*q));
        const char **ref = calloc((size_t)(n ? n : 1), sizeof(*ref));
        const char **pr = calloc((size_t)(n ? n : 1), sizeof(*pr));
        const char **tx = calloc((size_t)(n ? n : 1), sizeof(*tx));
        jp = malloc((size_t)(n ? n : 1) * sizeof(double));
        rc = !q || !ref || !pr || !tx || !jp ? r1_err_set(R1_ENOMEM, "evaluation: out of memory")
                                             : 0;
        for (int64_t i = 0; i < n && !rc; i++) {
            const struct r1_prompt *p = &set->items[i / K];
            q[i] = p->question;
            ref[i] = p->answer;
            pr[i] = p->text;
            tx[i] = c[i].text;
        }
        if (!rc)
            rc = r1_judge_completions(sp->judge, jc, (int)n, q, ref, pr, tx, jp);
        free(q), free(ref), free(pr), free(tx);
        if (rc)
            goto out;
    }
    double pass_sum = 0, maj_sum = 0;
    for (int64_t i = 0; i < set->n; i++) {
        const struct r1_prompt *p = &set->items[i];
        struct r1_eval_item *it = &r->items[i];
        if (!(it->samples = calloc((size_t)K, sizeof(*it->samples)))) {
            rc = r1_err_set(R1_ENOMEM, "evaluation: out of memory");
            goto out;
        }
        int passed = 0;
        for (int k = 0; k < K; k++) {
            struct r1_eval_completion *ck = &c[i * K + k];
            struct r1_eval_sample *s = &it->samples[k];
            struct r1_reward_input in = {p->text, ck->text, p->answer, p->meta, ck->tokens,
                                         sp->max_completion_len, jp ? jp[i * K + k] : NAN};
            s->reward = r1_reward_total(sp->rewards, sp->n_rewards, &in, NULL);
            s->pass = isfinite(s->reward) && s->reward >= threshold;
            s->tokens = ck->tokens;
            s->finish = ck->finish;
            if ((rc = extract(&in, from, &s->answer)))
                goto out;
            s->completion = ck->text;
            ck->text = NULL;
            passed += s->pass;
            answers[k] = s->answer;
        }
        it->pass_rate = (double)passed / K;
        it->majority = r1_eval_majority(answers, K);
        it->correct = it->majority >= 0 && r1_answers_equal(answers[it->majority], p->answer);
        pass_sum += it->pass_rate;
        maj_sum += it->correct;
    }
    r->pass_at_1 = set->n ? pass_sum / (double)set->n : 0;
    r->maj_at_n = set->n ? maj_sum / (double)set->n : 0;
out:
    free(jp);
    r1_eval_completions_free(c, set->n * K);
    free(answers);
    if (rc)
        r1_eval_report_free(r);
    else
        *out = r;
    return rc;
}
