/* judge.c - the generative judge: verdicts by log-probability, batched, cached (judge.h). */
#include "stages/judge.h"

#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "core/err.h"
#include "core/modelfile.h"
#include "core/sha256.h"
#include "stages/data/prompts.h"
#include "stages/rewards/rewards.h"
#include "stages/stage.h"

struct cache_entry {
    uint64_t key; /* the first 64 bits of the prompt's sha256; 0: empty */
    float p;
};

struct r1_judge {
    struct r1_model *m;
    const struct r1_tokenizer *tok;
    char *template_;
    int32_t yes_id, no_id;
    int max_len;
    /* one micro-batch */
    int32_t *tokens, *pos, *seg, *rows; /* (ROWS·max_len), (ROWS) */
    float *logits;                      /* (ROWS, V) */
    /* the cache: open addressing, power-of-two capacity, at most half full */
    struct cache_entry *cache;
    int64_t cap, used, hits, misses;
    /* r1_judge_open*: the model and tokenizer the judge owns (NULL: borrowed) */
    struct r1_model *own_m;
    struct r1_tokenizer *own_tok;
    char sha[R1_SHA256_HEX]; /* of the weights */
    FILE *log;               /* r1_judge_log_open with write: appended verdicts */
    char *log_path;
};

static int first_token(const struct r1_tokenizer *tok, const char *word, int32_t *out)
{
    int32_t *ids = NULL;
    int n = 0;
    int rc = r1_tokenizer_encode(tok, word, strlen(word), &ids, &n);
    if (rc)
        return rc;
    if (n < 1) {
        free(ids);
        return r1_err_set(R1_EINVAL, "judge: the verdict word '%s' encodes to no token", word);
    }
    *out = ids[0];
    free(ids);
    return 0;
}

int r1_judge_create(struct r1_judge **out, struct r1_model *m, const struct r1_tokenizer *tok,
                    const char *template_, const char *yes, const char *no, int max_len)
{
    *out = NULL;
    if (r1_model_has_score_head(m))
        return r1_err_set(R1_EINVAL, "judge: the model has a score head (a reward model); a "
                          "judge is a causal LM");
    if (max_len <= 0)
        max_len = m->cfg.max_seq_len < 512 ? m->cfg.max_seq_len : 512;
    if (max_len > m->cfg.max_seq_len || max_len < 2)
        return r1_err_set(R1_EINVAL, "judge: max_len %d is not in [2, %d] (the model's "
                          "max_seq_len)", max_len, m->cfg.max_seq_len);
    char *probe = r1_judge_prompt(template_, "q", "r", "p"); /* checks the template */
    if (!probe)
        return r1_err_code();
    free(probe);
    struct r1_judge *j = calloc(1, sizeof(*j));
    if (!j)
        return r1_err_set(R1_ENOMEM, "judge: out of memory");
    j->m = m;
    j->tok = tok;
    j->max_len = max_len;
    int rc;
    yes = yes ? yes : "yes";
    no = no ? no : "no";
    if ((rc = first_token(tok, yes, &j->yes_id)) || (rc = first_token(tok, no, &j->no_id)))
        goto fail;
    if (j->yes_id == j->no_id) {
        rc = r1_err_set(R1_EINVAL, "judge: the verdict words '%s' and '%s' start with the same "
                        "token; choose words whose first tokens differ", yes, no);
        goto fail;
    }
    if (j->yes_id >= m->cfg.vocab_size || j->no_id >= m->cfg.vocab_size) {
        rc = r1_err_set(R1_EINVAL, "judge: the verdict tokens are outside the model's "
                        "vocabulary (%d); the tokenizer does not belong to the model",
                        m->cfg.vocab_size);
        goto fail;
    }
    size_t cells = (size_t)R1_JUDGE_ROWS * (size_t)max_len;
    j->template_ = template_ ? strdup(template_) : NULL;
    j->tokens = malloc(cells * sizeof(int32_t));
    j->pos = malloc(cells * sizeof(int32_t));
    j->seg = malloc(cells * sizeof(int32_t));
    j->rows = malloc(R1_JUDGE_ROWS * sizeof(int32_t));
    j->logits = malloc((size_t)R1_JUDGE_ROWS * (size_t)m->cfg.vocab_size * sizeof(float));
    j->cap = 1024;
    j->cache = calloc((size_t)j->cap, sizeof(*j->cache));
    if ((template_ && !j->template_) || !j->tokens || !j->pos || !j->seg || !j->rows ||
        !j->logits || !j->cache) {
        rc = r1_err_set(R1_ENOMEM, "judge: out of memory for a %d x %d batch", R1_JUDGE_ROWS,
                        max_len);
        goto fail;
    }
    if ((rc = r1_model_reserve(m, R1_JUDGE_ROWS, max_len)))
        goto fail;
    float *w = malloc(m->params.cap); /* the identity: a hash of the weights */
    if (!w) {
        rc = r1_err_set(R1_ENOMEM, "judge: out of memory hashing the weights");
        goto fail;
    }
    m->be->ops->download(m->be->ctx, w, m->param_mem, m->params.cap);
    rc = r1_sha256_bytes(j->sha, w, m->params.cap);
    free(w);
    if (rc)
        goto fail;
    *out = j;
    return 0;
fail:
    r1_judge_free(j);
    return rc;
}

void r1_judge_free(struct r1_judge *j)
{
    if (!j)
        return;
    free(j->template_);
    free(j->tokens);
    free(j->pos);
    free(j->seg);
    free(j->rows);
    free(j->logits);
    free(j->cache);
    if (j->log)
        fclose(j->log);
    free(j->log_path);
    r1_model_free(j->own_m);
    r1_tokenizer_free(j->own_tok);
    free(j);
}

/* The judge of a model just opened (rc: the opening's status), owning m and tok. */
static int judge_adopt(struct r1_judge **out, int rc, struct r1_model *m,
                       struct r1_tokenizer *tok, const char *template_)
{
    if (!rc)
        rc = r1_judge_create(out, m, tok, template_, NULL, NULL, 0);
    if (rc) {
        r1_model_free(m);
        r1_tokenizer_free(tok);
        return rc;
    }
    (*out)->own_m = m;
    (*out)->own_tok = tok;
    return 0;
}

int r1_judge_open(struct r1_judge **out, const struct r1_stage_env *env,
                  const struct r1_reward_cfg *cfg, const char *key)
{
    *out = NULL;
    const struct r1_stage_cfg *c = &env->recipe->stages[env->index];
    struct r1_model *m = NULL;
    struct r1_tokenizer *tok = NULL;
    int rc = env->open_model(env->ctx, &cfg->judge, &m, &tok);
    if ((rc = judge_adopt(out, rc, m, tok, cfg->judge_template)))
        return r1_err_wrap(rc, "%s: stage '%s' %s judge '%s'", env->recipe->path, c->name, key,
                           cfg->judge.spec ? cfg->judge.spec : "");
    return 0;
}

int r1_judge_open_logged(struct r1_judge **out, const struct r1_stage_env *env,
                         const struct r1_reward_cfg *cfg, const char *key, char *name,
                         char *sha)
{
    int rc = r1_judge_open(out, env, cfg, key);
    if (rc)
        return rc;
    const char *stage = env->recipe->stages[env->index].name;
    bool lead = !env->dist || env->dist->rank == 0;
    char path[4200];
    snprintf(path, sizeof(path), "%s/judge", env->run_dir);
    if (lead && mkdir(path, 0777) != 0 && errno != EEXIST)
        rc = r1_err_set(R1_EIO, "%s: cannot create (%s)", path, strerror(errno));
    if ((rc = r1_dist_agree(env->dist, rc)))
        goto fail;
    snprintf(path, sizeof(path), "%s/judge/%s.log", env->run_dir, stage);
    int64_t loaded = 0;
    if ((rc = r1_judge_log_open(*out, path, lead, &loaded)))
        goto fail;
    const char *spec = cfg->judge.spec, *slash = strrchr(spec, '/');
    snprintf(name, 96, "judge:%s", slash ? slash + 1 : spec);
    snprintf(sha, R1_SHA256_HEX, "%s", (*out)->sha);
    return 0;
fail:
    r1_judge_free(*out);
    *out = NULL;
    return rc;
}

int r1_judge_open_path(struct r1_judge **out, struct r1_backend *be, const char *path,
                       const struct r1_reward_cfg *cfg)
{
    *out = NULL;
    struct r1_model *m = NULL;
    struct r1_tokenizer *tok = NULL;
    int rc = r1_model_open(&m, &tok, be, path);
    if ((rc = judge_adopt(out, rc, m, tok, cfg ? cfg->judge_template : NULL)))
        return r1_err_wrap(rc, "judge %s", path);
    return 0;
}

int r1_judge_completions(struct r1_judge *j, const struct r1_reward_cfg *cfg, int n,
                         const char *const *questions, const char *const *references,
                         const char *const *prompts, const char *const *completions,
                         double *out)
{
    char **pred = calloc((size_t)(n > 0 ? n : 1), sizeof(*pred));
    float *p = malloc((size_t)(n > 0 ? n : 1) * sizeof(float));
    int rc = !pred || !p ? r1_err_set(R1_ENOMEM, "judge: out of memory for %d verdicts", n) : 0;
    for (int i = 0; i < n && !rc; i++) {
        struct r1_reward_input in = {prompts[i], completions[i], NULL, NULL, 0, 0, NAN};
        char *eff = r1_reward_effective_completion(&in);
        size_t cap = eff ? strlen(eff) + 1 : 1;
        pred[i] = malloc(cap);
        if (!eff || !pred[i]) {
            free(eff);
            rc = r1_err_set(R1_ENOMEM, "judge: out of memory");
            break;
        }
        if (!r1_extract_answer(eff, cfg ? cfg->answer : R1_ANSWER_AUTO, pred[i], cap))
            pred[i][0] = '\0';
        free(eff);
    }
    if (!rc)
        rc = r1_judge_score(j, n, questions, references, (const char *const *)pred, p);
    for (int i = 0; i < n && !rc; i++)
        out[i] = p[i];
    for (int i = 0; pred && i < n; i++)
        free(pred[i]);
    free(pred);
    free(p);
    return rc;
}

void r1_judge_stats(const struct r1_judge *j, int64_t *hits, int64_t *misses)
{
    *hits = j->hits;
    *misses = j->misses;
}

const char *r1_judge_sha256(const struct r1_judge *j)
{
    return j->sha;
}

/* The slot of key: where it is, or the empty slot where it goes. */
static struct cache_entry *cache_slot(struct r1_judge *j, uint64_t key)
{
    uint64_t mask = (uint64_t)j->cap - 1;
    for (uint64_t i = key & mask;; i = (i + 1) & mask)
        if (j->cache[i].key == key || j->cache[i].key == 0)
            return &j->cache[i];
}

static int cache_put(struct r1_judge *j, uint64_t key, float p)
{
    if (2 * (j->used + 1) > j->cap) { /* grow: rehash into twice the slots */
        struct cache_entry *old = j->cache;
        int64_t old_cap = j->cap;
        struct cache_entry *nc = calloc((size_t)(2 * old_cap), sizeof(*nc));
        if (!nc)
            return r1_err_set(R1_ENOMEM, "judge: out of memory growing the verdict cache");
        j->cache = nc;
        j->cap = 2 * old_cap;
        for (int64_t i = 0; i < old_cap; i++)
            if (old[i].key)
                *cache_slot(j, old[i].key) = old[i];
        free(old);
    }
    struct cache_entry *e = cache_slot(j, key);
    if (!e->key)
        j->used++;
    e->key = key;
    e->p = p;
    return 0;
}

/* The cache key of a prompt: the first 64 bits of sha256(judge sha, prompt). */
static uint64_t prompt_key(const struct r1_judge *j, const char *text)
{
    char hex[R1_SHA256_HEX];
    size_t n = strlen(text);
    char *buf = malloc(R1_SHA256_HEX + n);
    if (!buf)
        return 1;
    memcpy(buf, j->sha, R1_SHA256_HEX - 1);
    buf[R1_SHA256_HEX - 1] = '\n';
    memcpy(buf + R1_SHA256_HEX, text, n);
    int rc = r1_sha256_bytes(hex, buf, R1_SHA256_HEX + n);
    free(buf);
    if (rc)
        return 1;
    uint64_t k = 0;
    for (int i = 0; i < 16; i++) /* the first 64 bits of the digest */
        k = (k << 4) | (uint64_t)(hex[i] <= '9' ? hex[i] - '0' : hex[i] - 'a' + 10);
    return k ? k : 1; /* 0 marks an empty slot */
}

/* Runs the forward for rows [0, n) of the pending micro-batch (ids[r], len[r]) and writes
 * P(yes) of each into out[r]. */
static int flush(struct r1_judge *j, int n, int32_t *const *ids, const int *len, float *out)
{
    int T = 1;
    for (int r = 0; r < n; r++)
        T = len[r] > T ? len[r] : T;
    for (int r = 0; r < n; r++) {
        for (int t = 0; t < T; t++) {
            size_t c = (size_t)r * T + t;
            int in = t < len[r];
            j->tokens[c] = in ? ids[r][t] : 0;
            j->pos[c] = in ? t : 0;
            j->seg[c] = in ? 0 : -1;
        }
        j->rows[r] = r * T + len[r] - 1;
    }
    struct r1_batch b = {n, T, j->tokens, j->pos, j->seg, NULL};
    int rc = r1_model_logits(j->m, &b, j->rows, n, j->logits);
    if (rc)
        return rc;
    int V = j->m->cfg.vocab_size;
    for (int r = 0; r < n; r++) {
        double d = (double)j->logits[(size_t)r * V + j->yes_id] -
                   (double)j->logits[(size_t)r * V + j->no_id];
        out[r] = (float)(d >= 0 ? 1.0 / (1.0 + exp(-d)) : exp(d) / (1.0 + exp(d)));
    }
    return 0;
}

int r1_judge_score(struct r1_judge *j, int n, const char *const *questions,
                   const char *const *references, const char *const *predictions, float *p_yes)
{
    int32_t *ids[R1_JUDGE_ROWS] = {0};
    int len[R1_JUDGE_ROWS], at[R1_JUDGE_ROWS];
    uint64_t keys[R1_JUDGE_ROWS];
    float got[R1_JUDGE_ROWS];
    int pending = 0, rc = 0;
    for (int i = 0; i <= n && !rc; i++) {
        if (i < n) {
            char *text = r1_judge_prompt(j->template_, questions[i], references[i],
                                         predictions[i]);
            if (!text) {
                rc = r1_err_code();
                break;
            }
            uint64_t key = prompt_key(j, text);
            struct cache_entry *e = cache_slot(j, key);
            if (e->key == key) {
                p_yes[i] = e->p;
                j->hits++;
                free(text);
                continue;
            }
            int32_t *t = NULL;
            int nt = 0;
            rc = r1_tokenizer_encode(j->tok, text, strlen(text), &t, &nt);
            free(text);
            if (rc)
                break;
            if (nt < 1) {
                free(t);
                rc = r1_err_set(R1_EINVAL, "judge: an empty judge prompt");
                break;
            }
            if (nt > j->max_len) { /* keep the end: the prediction and the verdict cue */
                memmove(t, t + (nt - j->max_len), (size_t)j->max_len * sizeof(int32_t));
                nt = j->max_len;
            }
            for (int k = 0; k < nt && !rc; k++)
                if (t[k] < 0 || t[k] >= j->m->cfg.vocab_size)
                    rc = r1_err_set(R1_EINVAL, "judge: token %d is outside the model's "
                                    "vocabulary (%d)", t[k], j->m->cfg.vocab_size);
            ids[pending] = t;
            len[pending] = nt;
            at[pending] = i;
            keys[pending++] = key;
            if (rc || pending < R1_JUDGE_ROWS)
                continue;
        }
        if (pending == 0)
            continue;
        rc = flush(j, pending, ids, len, got);
        for (int r = 0; r < pending; r++) {
            if (!rc) {
                p_yes[at[r]] = got[r];
                j->misses++;
                rc = cache_put(j, keys[r], got[r]);
                if (!rc && j->log) {
                    uint32_t bits;
                    memcpy(&bits, &got[r], sizeof(bits));
                    fprintf(j->log, "%016llx %08x\n", (unsigned long long)keys[r], bits);
                }
            }
            free(ids[r]);
            ids[r] = NULL;
        }
        /* a prompt twice in one batch was computed at two rows, which the BLAS may round
         * apart in the last bit: both take the cached (last) one, as a later call would */
        for (int r = 0; r < pending && !rc; r++) {
            struct cache_entry *e = cache_slot(j, keys[r]);
            if (e->key == keys[r])
                p_yes[at[r]] = e->p;
        }
        pending = 0;
        if (!rc && j->log && fflush(j->log) != 0)
            rc = r1_err_set(R1_EIO, "judge: cannot write the verdict log");
    }
    for (int r = 0; r < pending; r++)
        free(ids[r]);
    return rc;
}

int r1_judge_log_open(struct r1_judge *j, const char *path, bool write, int64_t *loaded)
{
    *loaded = 0;
    FILE *f = fopen(path, "rb");
    long good = 0; /* bytes of whole records */
    if (f) {
        char line[64];
        while (fgets(line, sizeof(line), f)) {
            unsigned long long key;
            unsigned bits;
            char nl;
            if (strlen(line) != 26 || sscanf(line, "%16llx %8x%c", &key, &bits, &nl) != 3 ||
                nl != '\n' || key == 0)
                break; /* torn or foreign: stop here */
            float p;
            uint32_t b = bits;
            memcpy(&p, &b, sizeof(p));
            int rc = cache_put(j, (uint64_t)key, p);
            if (rc) {
                fclose(f);
                return rc;
            }
            good = ftell(f);
            (*loaded)++;
        }
        fclose(f);
    }
    if (!write)
        return 0;
    if (f && truncate(path, good) != 0)
        return r1_err_set(R1_EIO, "%s: cannot cut the torn end of the verdict log (%s)", path,
                          strerror(errno));
    if (!(j->log = fopen(path, "ab")))
        return r1_err_set(R1_EIO, "%s: cannot append verdicts (%s)", path, strerror(errno));
    if (!(j->log_path = strdup(path)))
        return r1_err_set(R1_ENOMEM, "judge: out of memory");
    return 0;
}

int r1_judge_log_sha256(struct r1_judge *j, char hex[65])
{
    hex[0] = '\0';
    if (!j->log)
        return 0;
    if (fflush(j->log) != 0)
        return r1_err_set(R1_EIO, "%s: cannot write the verdict log", j->log_path);
    return r1_sha256_file(hex, NULL, j->log_path);
}
