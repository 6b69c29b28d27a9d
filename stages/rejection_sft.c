/* rejection_sft.c - the rejection_sft stage (DeepSeek-R1 stage 3) and distillation:
 * sample completions from a source model, keep the good ones, fine-tune on them.
 *
 * Two phases, one step counter:
 *   generate  step k (k = 0 .. G-1, G = ceil(prompts / prompts_per_step)) samples
 *             samples_per_prompt completions of prompts [k·P, (k+1)·P) of the prompt set
 *             (in index order) with rejection.source, scores them with rejection.rewards,
 *             filters them (stages/data/filters.h) and appends the kept ones to the
 *             dataset.  Completion j of prompt i is sampled from RNG stream i·K + j of a
 *             seed fixed for the stage, and a step always holds the same prompts, so the
 *             dataset is a pure function of the recipe: a run killed anywhere and resumed
 *             writes the same bytes.  After the last generation step the optional mix
 *             rows are added, the dataset is written to DIR/data/<stage>.jsonl and the
 *             source model is freed.
 *   train     SFT of the stage's model (init: by default the base model) on that file
 *             with stages/lm.h, for `steps` updates or `epochs` passes.
 * Step accounting: done = generation steps done + SFT updates done; total = G + SFT
 * updates.  With epochs the SFT length is known only once the dataset is, so until then
 * total uses the most rows the dataset can have (every prompt filling its quota, plus
 * the mix), an upper bound: a checkpoint whose step reaches it is the stage's last.
 *
 * Dataset rows (JSONL, one per kept completion, in prompt then sample order):
 *   {"prompt": question, "prompt_text": the templated prompt the source saw,
 *    "completion": text, "answer": reference, "prompt_index": i, "sample": j,
 *    "reward": weighted sum, "source": "rejection"}
 * and mix rows {"prompt", "prompt_text" (same template), "completion": the response,
 * "source": "mix"}.  SFT reads prompt_text + completion, exactly the text generated.
 *
 * Checkpoints hold dataset.jsonl (so far, then final) and trainer_state.json whose
 * "rejection" object is this stage's state; in the train phase also the lm stage's
 * files (its trainer_state.json fields stay, "steps_total" is the stage's). */
#include <errno.h>
#include <inttypes.h>
#include <jansson.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>

#include "core/err.h"
#include "core/file.h"
#include "core/generate.h"
#include "core/rng.h"
#include "core/sha256.h"
#include "core/utf8.h"
#include "stages/data/filters.h"
#include "stages/data/mix.h"
#include "stages/data/prompts.h"
#include "stages/evaluate.h"
#include "stages/judge.h"
#include "stages/lm.h"
#include "stages/rewards/rewards.h"
#include "stages/stage.h"

#define GEN_STEP_TOKENS 2048
#define STATE_FORMAT "r1-rejection-state-1"
#define SFT_PROMPT_FIELD "prompt_text"

enum phase { PHASE_GENERATE = 0, PHASE_TRAIN };

struct rs {
    const struct r1_recipe *recipe;
    const struct r1_stage_cfg *cfg;
    const struct r1_rejection_cfg *rj;
    struct r1_stage_env env;
    uint64_t seed, gen_seed;
    enum phase phase;
    struct r1_prompt_set *train, *eval;
    int64_t n_prompts, P, K, L, gen_steps;
    /* progress of the generation: prompts done, counts */
    int64_t cursor, samples, passed, kept;
    int64_t rejected[R1_REJECT_N];
    /* the mix file's rows (NULL: none), and how many joined */
    struct r1_mix_set *mix;
    int64_t n_mix, mix_wanted, mix_rows;
    /* the dataset (JSONL text) */
    char *ds;
    size_t ds_len, ds_cap;
    int64_t ds_rows;
    char ds_sha[65];
    char ds_path[4200], ds_name[200];
    /* the source, open during generation */
    struct r1_model *src;
    struct r1_tokenizer *src_tok;
    struct r1_generator *gen;
    int32_t **ptok; /* (n_prompts) the prompts in the source's tokens */
    int *plen;
    int32_t *comp;
    float *lps;
    struct r1_gen_result *res;
    struct r1_gen_request *req;
    struct r1_gen_result *own_res; /* (P·K) this rank's share of a generation step */
    struct r1_judge *judge;        /* rejection.rewards' judge (NULL: none) */
    double *judge_p;               /* (P·K) its P(yes) of a generation step's completions */
    /* verdicts computed and read from the cache before this process (from the state), and
     * the judge's identity for the ledger */
    int64_t judge_hits0, judge_misses0;
    char judge_name[96], judge_sha[65];
    char judge_log_name[96], judge_log_sha[65]; /* the verdict log, as of the last step */
    int32_t *gather_i;             /* (2·P·K) lengths and finish reasons, for the gather */
    int32_t stop_id;
    const struct r1_reward_def *acc;
    const struct r1_reward_cfg *acc_cfg;
    struct r1_reward_cfg acc_default;
    /* training */
    struct r1_lm_stage *lm;
    int64_t sft_total; /* exact in the train phase, an upper bound before */
    struct r1_lm_metrics last_lm;
    /* reporting */
    char rej_keys[R1_REJECT_N][40];
    struct r1_data_hash data[6];
    int n_data;
};

static double now_s(void)
{
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (double)t.tv_sec + 1e-9 * (double)t.tv_nsec;
}

static const char *base_name(const char *path)
{
    const char *s = strrchr(path, '/');
    return s ? s + 1 : path;
}

/* ---- validation ----------------------------------------------------------------- */

static int rs_validate(const struct r1_recipe *r, int index)
{
    const struct r1_stage_cfg *s = &r->stages[index];
    const struct r1_rejection_cfg *rj = &s->rejection;
    if (s->data.stage)
        return r1_err_set(R1_EINVAL, "%s: stage '%s' (rejection_sft) makes its own dataset from "
                          "prompts: set data.path or data.generator instead of data.stage",
                          r->path, s->name);
    int prc = r1_stage_check_prompt_data(r, index);
    if (prc)
        return prc;
    int rrc = r1_reward_check_list(rj->rewards, rj->n_rewards, "rejection.rewards");
    if (rrc)
        return r1_err_wrap(rrc, "%s: stage '%s'", r->path, s->name);
    if (rj->min_language > 0 && !r1_reward_language_known(rj->language))
        return r1_err_set(R1_EINVAL, "%s: stage '%s' rejection.language '%s' is not a known "
                          "language code (en, zh, ja, ko, ru, ar, ...)", r->path, s->name,
                          rj->language ? rj->language : "");
    if (rj->max_tokens > 0 && rj->max_tokens < rj->min_tokens)
        return r1_err_set(R1_EINVAL, "%s: stage '%s' rejection.max_tokens (%" PRId64 ") is below "
                          "min_tokens (%" PRId64 "): no completion could pass", r->path, s->name,
                          rj->max_tokens, rj->min_tokens);
    if (rj->min_tokens > rj->max_completion_len)
        return r1_err_set(R1_EINVAL, "%s: stage '%s' rejection.min_tokens (%" PRId64 ") is above "
                          "max_completion_len (%" PRId64 "): no completion could pass", r->path,
                          s->name, rj->min_tokens, rj->max_completion_len);
    if (rj->mix_path && !(rj->mix_ratio > 0))
        return r1_err_set(R1_EINVAL, "%s: stage '%s' sets rejection.mix_path but mix_ratio is 0: "
                          "set its share of the dataset (0 < mix_ratio < 1) or drop mix_path",
                          r->path, s->name);
    if (rj->mix_path) {
        struct r1_mix_set *m = NULL;
        int rc = r1_mix_load(&m, rj->mix_path, rj->mix_prompt_field, rj->mix_response_field);
        r1_mix_free(m);
        if (rc)
            return r1_err_wrap(rc, "%s: stage '%s'", r->path, s->name);
    }
    return 0;
}

/* ---- set-up --------------------------------------------------------------------- */

static void rs_free(void *state);

static int rs_init(void **state, const struct r1_stage_env *env)
{
    const struct r1_stage_cfg *c = &env->recipe->stages[env->index];
    struct rs *s = calloc(1, sizeof(*s));
    if (!s)
        return r1_err_set(R1_ENOMEM, "rejection_sft stage: out of memory");
    s->recipe = env->recipe;
    s->cfg = c;
    s->rj = &c->rejection;
    s->env = *env;
    s->seed = (uint64_t)env->recipe->seed + (uint64_t)env->index;
    s->gen_seed = r1_rng_mix64(s->seed ^ 0x72656a656374ull); /* "reject" */
    s->P = s->rj->prompts_per_step;
    s->K = s->rj->samples_per_prompt;
    s->L = s->rj->max_completion_len;
    int rc;
    struct r1_prompt_spec sp = {c->data.path, c->data.generator, c->data.size, s->seed,
                                R1_SPLIT_TRAIN, c->data.prompt_field, c->data.answer_field,
                                c->data.template_, 0, env->chat_template,
                                env->tok->chat_template};
    if ((rc = r1_prompt_set_load(&s->train, &sp, env->tok))) {
        rc = r1_err_wrap(rc, "stage '%s' prompts", c->name);
        goto fail;
    }
    s->n_prompts = s->rj->max_prompts > 0 && s->rj->max_prompts < s->train->n ? s->rj->max_prompts
                                                                              : s->train->n;
    s->gen_steps = (s->n_prompts + s->P - 1) / s->P;
    s->data[0] = (struct r1_data_hash){c->data.path ? base_name(c->data.path) : c->data.generator,
                                       s->train->sha256};
    s->n_data = 1;
    int limit = env->model->cfg.max_seq_len - (int)s->L;
    if ((rc = r1_eval_prompts_load(&s->eval, env, s->seed, limit > 0 ? limit : 1)))
        goto fail;
    if (s->eval && c->data.eval_path)
        s->data[s->n_data++] = (struct r1_data_hash){base_name(c->data.eval_path),
                                                     s->eval->sha256};
    if (s->rj->mix_path) {
        if ((rc = r1_mix_load(&s->mix, s->rj->mix_path, s->rj->mix_prompt_field,
                              s->rj->mix_response_field)))
            goto fail;
        s->n_mix = s->mix->n;
        s->data[s->n_data++] = (struct r1_data_hash){base_name(s->rj->mix_path), s->mix->sha256};
    }
    /* the dataset: its own entry, kept current after every step */
    snprintf(s->ds_name, sizeof(s->ds_name), "%s.jsonl", c->name);
    snprintf(s->ds_path, sizeof(s->ds_path), "%s/data/%s.jsonl", env->run_dir, c->name);
    r1_sha256_bytes(s->ds_sha, "", 0);
    s->data[s->n_data++] = (struct r1_data_hash){s->ds_name, s->ds_sha};

    /* the judge of correctness for metrics and evaluation: countdown or accuracy */
    const char *acc_name = "accuracy";
    for (int i = 0; i < s->rj->n_rewards; i++)
        if (strcmp(s->rj->rewards[i].name, "countdown") == 0)
            acc_name = "countdown";
    s->acc = r1_reward_find(acc_name);
    s->acc_default = (struct r1_reward_cfg){(char *)acc_name, 1.0f, R1_ANSWER_AUTO, "en", 3, -1.0f,
                                            {0}, NULL, R1_VERDICT_PROBABILITY, 0.5f};
    s->acc_cfg = &s->acc_default;
    for (int i = 0; i < s->rj->n_rewards; i++)
        if (strcmp(s->rj->rewards[i].name, acc_name) == 0) {
            s->acc_cfg = &s->rj->rewards[i];
            break;
        }
    for (int r = 0; r < R1_REJECT_N; r++)
        snprintf(s->rej_keys[r], sizeof(s->rej_keys[r]), "rejected/%s",
                 r1_reject_name((enum r1_reject)r));

    /* the SFT length before the dataset exists: exact with steps, an upper bound with
     * epochs (every prompt filling its quota, and the mix that would bring) */
    if (c->steps > 0) {
        s->sft_total = c->steps;
    } else {
        int64_t rows = s->n_prompts * s->rj->keep_per_prompt;
        int64_t mix = s->mix ? r1_mix_wanted(s->rj->mix_ratio, rows) : 0;
        rows += mix < s->n_mix ? mix : s->n_mix;
        s->sft_total = (c->epochs * rows + c->batch_size - 1) / c->batch_size;
    }
    *state = s;
    return 0;
fail:
    rs_free(s);
    return rc;
}

/* ---- the source model ----------------------------------------------------------- */

static void close_source(struct rs *s)
{
    r1_generator_free(s->gen);
    s->gen = NULL;
    for (int64_t i = 0; s->ptok && i < s->n_prompts; i++)
        free(s->ptok[i]);
    free(s->ptok);
    free(s->plen);
    free(s->comp);
    free(s->lps);
    free(s->res);
    free(s->req);
    free(s->own_res);
    free(s->gather_i);
    s->own_res = NULL;
    s->gather_i = NULL;
    s->ptok = NULL;
    s->plen = NULL;
    s->comp = NULL;
    s->lps = NULL;
    s->res = NULL;
    s->req = NULL;
    r1_judge_free(s->judge);
    s->judge = NULL;
    /* the judge's R1-Data entries go with it: the fine-tuning's checkpoints carry the
     * dataset's hash, whatever process sampled it */
    int kept = 0;
    for (int i = 0; i < s->n_data; i++)
        if (s->data[i].name != s->judge_name && s->data[i].name != s->judge_log_name)
            s->data[kept++] = s->data[i];
    s->n_data = kept;
    free(s->judge_p);
    s->judge_p = NULL;
    r1_model_free(s->src);
    r1_tokenizer_free(s->src_tok);
    s->src = NULL;
    s->src_tok = NULL;
}

/* The judge of rejection.rewards, its verdict log and its R1-Data entry. */
static int open_judge(struct rs *s, const struct r1_reward_cfg *jc)
{
    int rc = r1_judge_open_logged(&s->judge, &s->env, jc, "rejection.rewards", s->judge_name,
                                  s->judge_sha);
    bool listed = false;
    for (int i = 0; !rc && i < s->n_data; i++)
        listed |= s->data[i].name == s->judge_name;
    if (!rc && !listed) {
        s->data[s->n_data++] = (struct r1_data_hash){s->judge_name, s->judge_sha};
        snprintf(s->judge_log_name, sizeof(s->judge_log_name), "judge-verdicts:%s.log",
                 s->cfg->name);
        s->data[s->n_data++] = (struct r1_data_hash){s->judge_log_name, s->judge_log_sha};
    }
    if (!rc)
        rc = r1_judge_log_sha256(s->judge, s->judge_log_sha);
    return rc;
}

static int open_source(struct rs *s)
{
    const char *name = s->cfg->name;
    int rc = s->env.open_model(s->env.ctx, &s->rj->source, &s->src, &s->src_tok);
    if (rc)
        return r1_err_wrap(rc, "stage '%s' rejection.source '%s'", name, s->rj->source.spec);
    s->stop_id = s->src->cfg.eos_id;
    size_t S = (size_t)(s->P * s->K);
    const struct r1_reward_cfg *jc = r1_reward_find_judge(s->rj->rewards, s->rj->n_rewards);
    if (jc && ((rc = open_judge(s, jc)) || !(s->judge_p = malloc(S * sizeof(double))))) {
        if (!rc)
            rc = r1_err_set(R1_ENOMEM, "stage '%s': out of memory", name);
        goto fail;
    }
    s->ptok = calloc((size_t)s->n_prompts, sizeof(*s->ptok));
    s->plen = calloc((size_t)s->n_prompts, sizeof(*s->plen));
    s->comp = malloc(S * (size_t)s->L * sizeof(int32_t));
    s->lps = malloc(S * (size_t)s->L * sizeof(float));
    s->res = calloc(S, sizeof(*s->res));
    s->req = calloc(S, sizeof(*s->req));
    s->own_res = calloc(S, sizeof(*s->own_res));
    s->gather_i = calloc(2 * S, sizeof(*s->gather_i));
    if (!s->ptok || !s->plen || !s->comp || !s->lps || !s->res || !s->req || !s->own_res ||
        !s->gather_i) {
        rc = r1_err_set(R1_ENOMEM, "stage '%s': out of memory for %zu samples of %" PRId64
                        " tokens", name, S, s->L);
        goto fail;
    }
    /* the prompts in the source's own tokens (a teacher may tokenise differently) */
    int longest = 1;
    for (int64_t i = 0; i < s->n_prompts; i++) {
        const char *t = s->train->items[i].text;
        if ((rc = r1_tokenizer_encode(s->src_tok, t, strlen(t), &s->ptok[i], &s->plen[i])))
            goto fail;
        if (s->plen[i] < 1) {
            rc = r1_err_set(R1_EINVAL, "stage '%s': prompt %" PRId64 " is empty", name, i);
            goto fail;
        }
        longest = s->plen[i] > longest ? s->plen[i] : longest;
    }
    if (longest + s->L > s->src->cfg.max_seq_len) {
        rc = r1_err_set(R1_EINVAL, "%s: stage '%s': a %d-token prompt plus max_completion_len %"
                        PRId64 " exceeds the source model's %d positions; shorten the prompts "
                        "or lower rejection.max_completion_len", s->recipe->path, name, longest,
                        s->L, s->src->cfg.max_seq_len);
        goto fail;
    }
    int slots = (int64_t)S < s->cfg->gen_slots ? (int)S : (int)s->cfg->gen_slots;
    if ((rc = r1_generator_create(&s->gen, s->src, s->src_tok, slots, longest + (int)s->L,
                                  GEN_STEP_TOKENS > slots ? GEN_STEP_TOKENS : slots)))
        goto fail;
    return 0;
fail:
    close_source(s);
    return rc;
}

/* ---- the dataset ---------------------------------------------------------------- */

static int ds_append(struct rs *s, json_t *row)
{
    char *line = row ? json_dumps(row, JSON_COMPACT | JSON_PRESERVE_ORDER) : NULL;
    json_decref(row);
    if (!line)
        return r1_err_set(R1_ENOMEM, "stage '%s': out of memory for a dataset row",
                          s->cfg->name);
    size_t n = strlen(line);
    if (s->ds_len + n + 2 > s->ds_cap) {
        size_t cap = (s->ds_len + n + 2) * 2;
        char *nd = realloc(s->ds, cap);
        if (!nd) {
            free(line);
            return r1_err_set(R1_ENOMEM, "stage '%s': out of memory for the dataset (%zu bytes)",
                              s->cfg->name, cap);
        }
        s->ds = nd;
        s->ds_cap = cap;
    }
    memcpy(s->ds + s->ds_len, line, n);
    s->ds_len += n;
    s->ds[s->ds_len++] = '\n';
    s->ds[s->ds_len] = '\0';
    s->ds_rows++;
    free(line);
    return 0;
}

static int ds_rehash(struct rs *s)
{
    return r1_sha256_bytes(s->ds_sha, s->ds ? s->ds : "", s->ds_len);
}

/* Adds the mix rows: a seeded choice of mix_wanted rows of the file (all of them when it
 * is shorter), in file order, after the generated ones. */
static int add_mix(struct rs *s)
{
    s->mix_wanted = s->mix ? r1_mix_wanted(s->rj->mix_ratio, s->ds_rows) : 0;
    s->mix_rows = s->mix_wanted < s->n_mix ? s->mix_wanted : s->n_mix;
    if (s->mix_rows == 0)
        return 0;
    char *take = calloc((size_t)s->n_mix, 1);
    if (!take)
        return r1_err_set(R1_ENOMEM, "stage '%s': out of memory for the mix", s->cfg->name);
    int rc = r1_mix_choose(s->mix, s->mix_rows, s->seed, R1_STREAM_USER + 0x6d6978ull, take);
    for (int64_t i = 0; i < s->n_mix && !rc; i++) {
        if (!take[i])
            continue;
        char *text = r1_prompt_template_apply(s->cfg->data.template_, s->mix->rows[i].prompt);
        if (!text) {
            rc = r1_err_wrap(R1_EINVAL, "stage '%s' mix row %" PRId64, s->cfg->name, i + 1);
            break;
        }
        const struct r1_mix_row *mr = &s->mix->rows[i];
        rc = ds_append(s, json_pack("{s:s, s:s, s:s, s:s}", "prompt", mr->prompt, SFT_PROMPT_FIELD,
                                    text, "completion", mr->response, "source", "mix"));
        free(text);
    }
    free(take);
    return rc;
}

static int mkdir_p1(const char *path)
{
    if (mkdir(path, 0777) != 0 && errno != EEXIST)
        return r1_err_set(R1_EIO, "%s: cannot create (%s)", path, strerror(errno));
    return 0;
}

/* DIR/data/<stage>.jsonl holds the dataset (rewritten only when it differs). */
static int publish_dataset(struct rs *s)
{
    char dir[4200];
    snprintf(dir, sizeof(dir), "%s/data", s->env.run_dir);
    int rc = mkdir_p1(dir);
    if (rc)
        return rc;
    char *old = NULL;
    size_t old_len = 0;
    FILE *f = fopen(s->ds_path, "rb");
    if (f) {
        fclose(f);
        if (r1_file_read(s->ds_path, &old, &old_len) != 0)
            old = NULL;
    }
    int same = old && old_len == s->ds_len && memcmp(old, s->ds ? s->ds : "", old_len) == 0;
    free(old);
    r1_err_clear();
    return same ? 0 : r1_file_write_atomic(s->ds_path, s->ds ? s->ds : "", s->ds_len);
}

/* The train phase: the SFT trainer on the published dataset. */
static int start_training(struct rs *s)
{
    const struct r1_stage_cfg *c = s->cfg;
    struct r1_lm_config lc = {
        .steps = c->steps,
        .epochs = c->epochs,
        .batch_size = (int)c->batch_size,
        .micro_batch_size = (int)(c->micro_batch_size ? c->micro_batch_size : c->batch_size),
        .seq_len = (int)c->seq_len,
        .seed = s->seed,
        .optim = c->optim,
        .data = {.path = s->ds_path,
                 .kind = R1_CORPUS_PAIRS,
                 .format = R1_CORPUS_JSONL,
                 .prompt_field = SFT_PROMPT_FIELD,
                 .completion_field = "completion",
                 /* prompt_text is the prompt as the source saw it: any chat template is
                  * already rendered there */
                 .pack = c->data.pack},
        .dist = s->env.dist, /* the fine-tuning is data parallel, the sampling replicated */
    };
    /* rank 0 writes the dataset; the others read it once it is there */
    int lead = !s->env.dist || s->env.dist->rank == 0;
    int rc = r1_dist_agree(s->env.dist, lead ? publish_dataset(s) : 0);
    if (!rc)
        rc = r1_lm_stage_create(&s->lm, s->env.model, s->env.tok, &lc);
    if (rc)
        return r1_err_wrap(rc, "stage '%s' fine-tuning", c->name);
    s->sft_total = r1_lm_stage_steps_total(s->lm);
    s->phase = PHASE_TRAIN;
    return 0;
}

static void counts_text(const struct rs *s, char *buf, size_t cap)
{
    size_t used = 0;
    buf[0] = '\0';
    for (int r = 1; r < R1_REJECT_N; r++) {
        if (!s->rejected[r])
            continue;
        int n = snprintf(buf + used, cap - used, "%s%" PRId64 " %s", used ? ", " : "",
                         s->rejected[r], r1_reject_name((enum r1_reject)r));
        if (n < 0 || (size_t)n >= cap - used)
            break;
        used += (size_t)n;
    }
}

static int finish_generation(struct rs *s)
{
    close_source(s);
    if (s->ds_rows == 0) {
        char why[300];
        counts_text(s, why, sizeof(why));
        return r1_err_set(R1_EINVAL, "%s: stage '%s': rejection sampling kept none of %" PRId64
                          " samples (rejected: %s); lower rejection.min_reward, loosen the "
                          "filters or sample more (samples_per_prompt)", s->recipe->path,
                          s->cfg->name, s->samples, why);
    }
    int rc = add_mix(s);
    if (!rc)
        rc = ds_rehash(s);
    if (!rc)
        rc = start_training(s);
    return rc;
}

/* ---- one step ------------------------------------------------------------------- */

#define PUT(k, v)                                                                               \
    do {                                                                                        \
        if (out->n < R1_STAGE_MAX_METRICS) {                                                    \
            out->keys[out->n] = (k);                                                            \
            out->values[out->n++] = (v);                                                        \
        }                                                                                       \
    } while (0)

static int64_t gen_done(const struct rs *s)
{
    return (s->cursor + s->P - 1) / s->P;
}

/* P(yes) of the judge for the completions of prompts [a, b) into s->judge_p. */
static int judge_step(struct rs *s, int64_t a, int64_t b)
{
    int n = (int)((b - a) * s->K), rc = 0;
    const char **q = calloc((size_t)n, sizeof(*q)), **ref = calloc((size_t)n, sizeof(*ref));
    const char **pr = calloc((size_t)n, sizeof(*pr));
    char **texts = calloc((size_t)n, sizeof(*texts));
    if (!q || !ref || !pr || !texts)
        rc = r1_err_set(R1_ENOMEM, "stage '%s': out of memory", s->cfg->name);
    for (int k = 0; k < n && !rc; k++) {
        const struct r1_prompt *p = &s->train->items[a + k / s->K];
        const struct r1_gen_result *res = &s->res[k];
        int nt = res->n;
        if (nt > 0 && res->finish == R1_FINISH_STOP && res->tokens[nt - 1] == s->stop_id)
            nt--;
        char *raw = NULL;
        size_t raw_len = 0;
        if ((rc = r1_tokenizer_decode(s->src_tok, res->tokens, nt, &raw, &raw_len)))
            break;
        texts[k] = r1_utf8_clean(raw, raw_len);
        free(raw);
        if (!texts[k]) {
            rc = r1_err_set(R1_ENOMEM, "stage '%s': out of memory", s->cfg->name);
            break;
        }
        q[k] = p->question;
        ref[k] = p->answer;
        pr[k] = p->text;
    }
    const struct r1_reward_cfg *jc = r1_reward_find_judge(s->rj->rewards, s->rj->n_rewards);
    if (!rc)
        rc = r1_judge_completions(s->judge, jc, n, q, ref, pr, (const char *const *)texts,
                                  s->judge_p);
    for (int k = 0; texts && k < n; k++)
        free(texts[k]);
    free(texts);
    free(q);
    free(ref);
    free(pr);
    return rc ? r1_err_wrap(rc, "stage '%s' judge", s->cfg->name) : 0;
}

static int generate_step(struct rs *s, struct r1_stage_metrics *out)
{
    double t0 = now_s();
    int rc;
    if (!s->src && (rc = open_source(s)))
        return rc;
    int64_t a = s->cursor, b = a + s->P < s->n_prompts ? a + s->P : s->n_prompts;
    int n = (int)((b - a) * s->K), mine = 0;
    /* under mpirun rank r samples prompts i ≡ r (mod world), each with the random stream a
     * single process gives it; the ranks' completions are then gathered, and every rank
     * filters all of them alike (the dataset is the same on every rank) */
    int rank = s->env.dist ? s->env.dist->rank : 0, world = s->env.dist ? s->env.dist->world : 1;
    for (int q = 0; q < n; q++) {
        int64_t i = a + q / s->K, j = q % s->K;
        s->res[q] = (struct r1_gen_result){s->comp + (size_t)q * s->L, s->lps + (size_t)q * s->L,
                                           0, R1_FINISH_STOP};
        if (i % world != rank) {
            memset(s->res[q].tokens, 0, (size_t)s->L * sizeof(int32_t));
            continue;
        }
        s->req[mine] = (struct r1_gen_request){s->ptok[i], s->plen[i], (uint64_t)(i * s->K + j)};
        s->own_res[mine++] = s->res[q];
    }
    struct r1_gen_config gc = {{s->rj->temperature, 0, s->rj->top_p, 0}, (int)s->L, s->gen_seed,
                               &s->stop_id, s->stop_id >= 0, NULL, 0, s->env.model->precision};
    rc = mine > 0 ? r1_generate(s->gen, &gc, s->req, mine, s->own_res, NULL, NULL) : 0;
    if (rc)
        r1_err_wrap(rc, "stage '%s' generation step %" PRId64, s->cfg->name, gen_done(s) + 1);
    for (int q = 0, k = 0; q < n && !rc; q++) {
        bool own = (a + q / s->K) % world == rank;
        if (own)
            s->res[q] = s->own_res[k++];
        s->gather_i[2 * q] = own ? s->res[q].n : 0;
        s->gather_i[2 * q + 1] = own ? (int32_t)s->res[q].finish : 0;
    }
    if ((rc = r1_dist_agree(s->env.dist, rc)) ||
        (rc = r1_dist_sum_i32(s->env.dist, s->comp, (int64_t)n * s->L)) ||
        (rc = r1_dist_sum_i32(s->env.dist, s->gather_i, 2 * (int64_t)n)))
        return rc;
    for (int q = 0; q < n && world > 1; q++) {
        s->res[q].n = s->gather_i[2 * q];
        s->res[q].finish = (enum r1_finish)s->gather_i[2 * q + 1];
    }
    double t_gen = now_s() - t0;

    struct r1_filter_cfg fc = {s->rj->min_reward, s->rj->require_format, s->rj->language,
                               s->rj->min_language, s->rj->min_tokens, s->rj->max_tokens,
                               s->rj->no_code_blocks, s->rj->max_paragraph_chars,
                               s->rj->dedup_threshold, s->rj->keep_per_prompt};
    char **texts = calloc((size_t)s->K, sizeof(char *));
    const char **kept_texts = calloc((size_t)s->K, sizeof(char *));
    if (!texts || !kept_texts) {
        free(texts);
        free(kept_texts);
        return r1_err_set(R1_ENOMEM, "stage '%s': out of memory", s->cfg->name);
    }
    double rsum = 0, acc = 0, len = 0;
    int64_t step_kept = 0;
    if (s->judge) { /* the judge's verdicts of the whole step in one batched pass */
        if (!(rc = judge_step(s, a, b)))
            rc = r1_judge_log_sha256(s->judge, s->judge_log_sha);
    }
    for (int64_t i = a; i < b && !rc; i++) {
        const struct r1_prompt *p = &s->train->items[i];
        struct r1_filter_kept kept = {kept_texts, 0};
        for (int64_t j = 0; j < s->K && !rc; j++) {
            const struct r1_gen_result *res = &s->res[(i - a) * s->K + j];
            int nt = res->n;
            if (nt > 0 && res->finish == R1_FINISH_STOP && res->tokens[nt - 1] == s->stop_id)
                nt--; /* the stop token is not text */
            char *raw = NULL;
            size_t raw_len = 0;
            if ((rc = r1_tokenizer_decode(s->src_tok, res->tokens, nt, &raw, &raw_len)))
                break;
            /* a byte-level model may emit any bytes; the dataset is JSON text */
            texts[j] = r1_utf8_clean(raw, raw_len);
            free(raw);
            if (!texts[j]) {
                rc = r1_err_set(R1_ENOMEM, "stage '%s': out of memory", s->cfg->name);
                break;
            }
            struct r1_reward_input in = {p->text, texts[j], p->answer, p->meta, res->n, (int)s->L,
                                         s->judge ? s->judge_p[(i - a) * s->K + j] : NAN};
            double reward = r1_reward_total(s->rj->rewards, s->rj->n_rewards, &in, NULL);
            double ac = s->acc->fn(&in, s->acc_cfg);
            rsum += reward;
            acc += isfinite(ac) && ac >= 1.0;
            len += res->n;
            struct r1_filter_sample fs = {p->text, texts[j], nt, res->finish == R1_FINISH_LENGTH,
                                          reward};
            enum r1_reject why = r1_filter_check(&fc, &fs, &kept);
            s->samples++;
            if (why == R1_REJECT_NONE || why == R1_REJECT_DUPLICATE || why == R1_REJECT_QUOTA)
                s->passed++; /* good enough on its own */
            if (why != R1_REJECT_NONE) {
                s->rejected[why]++;
                continue;
            }
            kept_texts[kept.n++] = texts[j];
            s->kept++;
            step_kept++;
            rc = ds_append(s, json_pack("{s:s, s:s, s:s, s:s, s:I, s:I, s:f, s:s}", "prompt",
                                        p->question, SFT_PROMPT_FIELD, p->text, "completion",
                                        texts[j], "answer", p->answer, "prompt_index",
                                        (json_int_t)i, "sample", (json_int_t)j, "reward", reward,
                                        "source", "rejection"));
        }
        for (int64_t j = 0; j < s->K; j++) {
            free(texts[j]);
            texts[j] = NULL;
        }
    }
    free(texts);
    free(kept_texts);
    if (rc)
        return rc;
    s->cursor = b;
    bool last = s->cursor >= s->n_prompts;
    if (last)
        rc = finish_generation(s);
    else
        rc = ds_rehash(s);
    if (rc)
        return rc;

    double t_all = now_s() - t0;
    out->n = 0;
    out->step = gen_done(s);
    out->samples = NULL;
    PUT("prompts_done", (double)s->cursor);
    PUT("samples", (double)s->samples);
    PUT("kept", (double)s->kept);
    PUT("passed", (double)s->passed);
    for (int r = 1; r < R1_REJECT_N; r++)
        PUT(s->rej_keys[r], (double)s->rejected[r]);
    PUT("pass_rate", s->samples ? (double)s->kept / (double)s->samples : 0);
    PUT("step_kept", (double)step_kept);
    if (s->judge) { /* cumulative over the stage, across resumes */
        int64_t h, m;
        r1_judge_stats(s->judge, &h, &m);
        PUT("judge_hits", (double)(s->judge_hits0 + h));
        PUT("judge_misses", (double)(s->judge_misses0 + m));
    }
    PUT("reward", n ? rsum / n : 0);
    PUT("accuracy", n ? acc / n : 0);
    PUT("completion_len", n ? len / n : 0);
    if (last) {
        PUT("dataset_rows", (double)s->ds_rows);
        PUT("mix_rows", (double)s->mix_rows);
        PUT("mix_wanted", (double)s->mix_wanted);
        PUT("sft_steps", (double)s->sft_total);
    }
    PUT("gen_tokens_per_s", t_gen > 0 ? len / t_gen : 0);
    PUT("step_s", t_all);
    return 0;
}

static int rs_step(void *state, struct r1_stage_metrics *out)
{
    struct rs *s = state;
    if (s->phase == PHASE_GENERATE)
        return generate_step(s, out);
    int rc = r1_lm_stage_step(s->lm, &s->last_lm);
    if (rc)
        return r1_err_wrap(rc, "stage '%s' fine-tuning", s->cfg->name);
    const struct r1_lm_metrics *m = &s->last_lm;
    *out = (struct r1_stage_metrics){s->gen_steps + m->step, 5,
                                     {"loss", "grad_norm", "lr", "tokens", "epoch"},
                                     {m->loss, m->grad_norm, m->lr, (double)m->tokens,
                                      (double)m->epoch},
                                     NULL};
    return 0;
}

/* ---- evaluation ----------------------------------------------------------------- */

static int rs_evaluate(void *state, struct r1_stage_metrics *out)
{
    struct rs *s = state;
    out->n = 0;
    out->samples = NULL;
    /* the model changes only in the train phase: measure it before the first step and
     * then only while and after it trains */
    if (!s->eval || (s->phase == PHASE_GENERATE && s->cursor > 0))
        return 0;
    struct r1_eval_spec sp = {s->eval, (int)s->cfg->eval_samples, s->cfg->eval_temperature, 1.0f,
                              (int)s->L,
                              r1_rng_mix64(s->seed ^ 0x6576616cull), s->rj->rewards,
                              s->rj->n_rewards, s->acc_default.name, s->env.model->precision,
                              s->env.dist, NULL, (int)s->cfg->gen_slots};
    return r1_eval_generate(s->env.model, s->env.tok, &sp, out);
}

/* ---- checkpoint state ----------------------------------------------------------- */

static void rs_progress(const void *state, int64_t *done, int64_t *total)
{
    const struct rs *s = state;
    *done = gen_done(s) + (s->lm ? r1_lm_stage_steps_done(s->lm) : 0);
    *total = s->gen_steps + s->sft_total;
}

static bool rs_finished(const void *state)
{
    const struct rs *s = state;
    return s->phase == PHASE_TRAIN && r1_lm_stage_steps_done(s->lm) >= s->sft_total;
}

static json_t *state_json(const struct rs *s)
{
    int64_t done, total;
    rs_progress(s, &done, &total);
    json_t *rej = json_object();
    for (int r = 1; rej && r < R1_REJECT_N; r++)
        json_object_set_new(rej, r1_reject_name((enum r1_reject)r),
                            json_integer((json_int_t)s->rejected[r]));
    char seed[32];
    snprintf(seed, sizeof(seed), "%016" PRIx64, s->seed);
    return json_pack("{s:s, s:s, s:I, s:I, s:I, s:I, s:I, s:s, s:I, s:I, s:I, s:o, s:I, s:I, "
                     "s:I, s:s, s:I, s:s}",
                     "format", STATE_FORMAT, "phase",
                     s->phase == PHASE_TRAIN ? "train" : "generate", "step", (json_int_t)done,
                     "steps_total", (json_int_t)total, "generation_steps",
                     (json_int_t)s->gen_steps, "prompts_done", (json_int_t)s->cursor,
                     "prompts_total", (json_int_t)s->n_prompts, "prompts_sha256",
                     s->train->sha256, "samples", (json_int_t)s->samples, "passed",
                     (json_int_t)s->passed, "kept", (json_int_t)s->kept, "rejected", rej,
                     "mix_rows", (json_int_t)s->mix_rows, "mix_wanted",
                     (json_int_t)s->mix_wanted, "dataset_rows", (json_int_t)s->ds_rows,
                     "dataset_sha256", s->ds_sha, "sft_steps_total", (json_int_t)s->sft_total,
                     "seed_hex", seed);
}

/* state_json plus the judge's verdict counters (when the stage has a judge) */
static json_t *state_json_all(const struct rs *s)
{
    json_t *o = state_json(s);
    if (o && (s->judge || s->judge_hits0 || s->judge_misses0)) {
        int64_t h = 0, m = 0;
        if (s->judge)
            r1_judge_stats(s->judge, &h, &m);
        json_object_set_new(o, "judge_hits", json_integer((json_int_t)(s->judge_hits0 + h)));
        json_object_set_new(o, "judge_misses", json_integer((json_int_t)(s->judge_misses0 + m)));
    }
    return o;
}

static const char *const files_generate[] = {R1_STAGE_DATASET_FILE, "trainer_state.json"};
static const char *const files_train[] = {R1_STAGE_DATASET_FILE, "config.json",
                                          "model.safetensors", "optimizer.safetensors",
                                          "trainer_state.json"};

static int rs_save(void *state, const char *dir, const char *const **files, int *n_files)
{
    struct rs *s = state;
    char path[4200];
    snprintf(path, sizeof(path), "%s/" R1_STAGE_DATASET_FILE, dir);
    int rc = r1_file_write_atomic(path, s->ds ? s->ds : "", s->ds_len);
    if (rc)
        return rc;
    json_t *st = state_json_all(s);
    if (!st)
        return r1_err_set(R1_ENOMEM, "stage '%s': out of memory for its state", s->cfg->name);
    int64_t done, total;
    rs_progress(s, &done, &total);
    json_t *o;
    if (s->phase == PHASE_TRAIN) {
        /* the lm trainer's state, with this stage's total and state added */
        if ((rc = r1_lm_stage_save(s->lm, dir))) {
            json_decref(st);
            return rc;
        }
        snprintf(path, sizeof(path), "%s/trainer_state.json", dir);
        json_error_t e;
        o = json_load_file(path, 0, &e);
        if (!o) {
            json_decref(st);
            return r1_err_set(R1_EFORMAT, "%s: cannot read back the trainer state (%s)", path,
                              e.text);
        }
        *files = files_train;
        *n_files = (int)(sizeof(files_train) / sizeof(files_train[0]));
    } else {
        o = json_pack("{s:s, s:I}", "format", STATE_FORMAT, "step", (json_int_t)done);
        *files = files_generate;
        *n_files = (int)(sizeof(files_generate) / sizeof(files_generate[0]));
    }
    if (o) {
        json_object_set_new(o, "steps_total", json_integer((json_int_t)total));
        json_object_set_new(o, "rejection", st);
    } else {
        json_decref(st);
    }
    return r1_stage_write_state(dir, o);
}

static int rs_load(void *state, const char *dir)
{
    struct rs *s = state;
    char path[4200];
    snprintf(path, sizeof(path), "%s/trainer_state.json", dir);
    json_error_t e;
    json_t *o = json_load_file(path, 0, &e);
    json_t *st = json_object_get(o, "rejection"), *rej = NULL;
    const char *fmt = NULL, *phase = NULL, *psha = NULL, *dsha = NULL;
    json_int_t cursor = -1, n_prompts = -1, samples = -1, passed = -1, kept = -1, mix_rows = -1,
               mix_want = -1, rows = -1;
    int rc = 0;
    if (!st || json_unpack(st, "{s:s, s:s, s:I, s:I, s:s, s:I, s:I, s:I, s:o, s:I, s:I, s:I, s:s}",
                           "format", &fmt, "phase", &phase, "prompts_done", &cursor,
                           "prompts_total", &n_prompts, "prompts_sha256", &psha, "samples",
                           &samples, "passed", &passed, "kept", &kept, "rejected", &rej,
                           "mix_rows", &mix_rows, "mix_wanted", &mix_want, "dataset_rows", &rows,
                           "dataset_sha256", &dsha) != 0 ||
        strcmp(fmt, STATE_FORMAT) != 0 || !json_is_object(rej) || cursor < 0 ||
        cursor > n_prompts || samples < 0 || kept < 0 || rows < 0 ||
        (strcmp(phase, "train") != 0 && strcmp(phase, "generate") != 0)) {
        json_decref(o);
        return r1_err_set(R1_EFORMAT, "%s: missing or malformed rejection_sft state; resume "
                          "from an earlier checkpoint", path);
    }
    if (strcmp(psha, s->train->sha256) != 0 || n_prompts != s->n_prompts) {
        json_decref(o);
        return r1_err_set(R1_EINVAL, "%s: the prompts changed since this checkpoint; restore "
                          "the data the run started with", path);
    }
    bool train = strcmp(phase, "train") == 0;
    if (train != (cursor == n_prompts) || (!train && cursor % s->P != 0)) {
        json_decref(o);
        return r1_err_set(R1_EFORMAT, "%s: the rejection_sft state (phase %s at prompt %lld of "
                          "%lld) is inconsistent; resume from an earlier checkpoint", path, phase,
                          (long long)cursor, (long long)n_prompts);
    }
    s->cursor = cursor;
    s->samples = samples;
    s->passed = passed;
    s->kept = kept;
    s->mix_rows = mix_rows;
    s->mix_wanted = mix_want;
    for (int r = 1; r < R1_REJECT_N; r++) {
        const char *name = r1_reject_name((enum r1_reject)r);
        s->rejected[r] = json_integer_value(json_object_get(rej, name));
    }
    s->judge_hits0 = json_integer_value(json_object_get(st, "judge_hits"));
    s->judge_misses0 = json_integer_value(json_object_get(st, "judge_misses"));
    char want_sha[65];
    snprintf(want_sha, sizeof(want_sha), "%s", dsha);
    json_decref(o);

    /* the dataset so far, checked against the state */
    snprintf(path, sizeof(path), "%s/" R1_STAGE_DATASET_FILE, dir);
    free(s->ds);
    s->ds = NULL;
    s->ds_len = s->ds_cap = 0;
    if ((rc = r1_file_read(path, &s->ds, &s->ds_len)))
        return rc;
    s->ds_cap = s->ds_len + 1;
    s->ds_rows = rows;
    if ((rc = ds_rehash(s)))
        return rc;
    if (strcmp(s->ds_sha, want_sha) != 0)
        return r1_err_set(R1_EFORMAT, "%s: the dataset does not match its checkpoint's state "
                          "(sha256 %.12s..., recorded %.12s...); resume from an earlier "
                          "checkpoint", path, s->ds_sha, want_sha);
    close_source(s);
    r1_lm_stage_free(s->lm);
    s->lm = NULL;
    s->phase = PHASE_GENERATE;
    if (!train)
        return 0;
    if ((rc = start_training(s)))
        return rc;
    return r1_lm_stage_load(s->lm, dir);
}

static void rs_summary(const void *state, char *buf, size_t cap)
{
    const struct rs *s = state;
    int64_t done, total;
    rs_progress(s, &done, &total);
    char why[160];
    counts_text(s, why, sizeof(why));
    int n = snprintf(buf, cap, "%s: step %" PRId64 " of %" PRId64 ", %" PRId64 " of %" PRId64
                     " prompts: kept %" PRId64 " of %" PRId64 " samples (rejected %s)",
                     s->cfg->name, done, total, s->cursor, s->n_prompts, s->kept, s->samples,
                     why[0] ? why : "none");
    if (n < 0 || (size_t)n >= cap || s->phase != PHASE_TRAIN)
        return;
    size_t used = (size_t)n;
    if (s->mix_rows > 0 || s->mix_wanted > 0) {
        n = snprintf(buf + used, cap - used, ", mix %" PRId64 " of %" PRId64 " wanted",
                     s->mix_rows, s->mix_wanted);
        if (n < 0 || (size_t)n >= cap - used)
            return;
        used += (size_t)n;
    }
    if (r1_lm_stage_steps_done(s->lm) > 0)
        snprintf(buf + used, cap - used, ", loss %.4f", s->last_lm.loss);
}

static const struct r1_data_hash *rs_data(const void *state, int *n)
{
    const struct rs *s = state;
    *n = s->n_data;
    return s->data;
}

static void rs_free(void *state)
{
    struct rs *s = state;
    if (!s)
        return;
    close_source(s);
    r1_lm_stage_free(s->lm);
    r1_prompt_set_free(s->train);
    r1_prompt_set_free(s->eval);
    r1_mix_free(s->mix);
    free(s->ds);
    free(s);
}

static struct r1_optim *rs_optim(void *state)
{
    struct rs *s = state;
    return s->lm ? r1_lm_stage_optim(s->lm) : NULL;
}

const struct r1_stage_ops r1_rejection_sft_stage_ops = {
    "rejection_sft", rs_validate, rs_init, rs_step, rs_save, rs_load, rs_finished,
    rs_progress, rs_summary, rs_evaluate, rs_data, rs_free, rs_optim,
};
