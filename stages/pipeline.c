/* pipeline.c - runs a recipe's stages with checkpoints and the ledger (see pipeline.h). */
#include "stages/pipeline.h"

#include <errno.h>
#include <inttypes.h>
#include <jansson.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <fcntl.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <unistd.h>

#include "core/backend.h"
#include "core/checkpoint.h"
#include "core/err.h"
#include "core/file.h"
#include "core/dist.h"
#include "core/hfdir.h"
#include "core/modelfile.h"
#include "core/optim.h"
#include "core/ledger.h"
#include "core/template.h"
#include "stages/stage.h"

struct run {
    const struct r1_pipeline_opts *o;
    struct r1_recipe *r;
    char dir[4096];
    char *lock;
    size_t lock_len;
    char hash[65];
    struct r1_backend *be;
    FILE *metrics;
    int lock_fd; /* flock on DIR/.r1.lock while running */
    struct r1_dist *dist; /* o->dist (may be NULL: one process) */
    bool lead;            /* rank 0: the only writer of the run directory */
};

/* Every stage must be of a kind this r1 trains, from sources it reads, and pass its
 * kind's own checks; all before any work starts. */
int r1_pipeline_check(const struct r1_recipe *r)
{
    for (int i = 0; i < r->n_stages; i++) {
        const struct r1_stage_cfg *s = &r->stages[i];
        const struct r1_stage_ops *ops = r1_stage_ops_find(s->kind);
        if (!ops)
            return r1_err_set(R1_EINVAL, "%s: stage '%s' is of kind %s, which this build of r1 "
                              "cannot train", r->path, s->name, r1_stage_kind_name(s->kind));
        int rc = ops->validate(r, i);
        if (rc)
            return rc;
    }
    const char *chat = NULL;
    int rc = r1_chat_template_resolve(r->chat_template, NULL, &chat);
    return rc ? r1_err_wrap(rc, "%s: model.chat_template", r->path) : 0;
}

/* The canonical recipe text and its hash. */
static int lock_recipe(struct run *R)
{
    FILE *f = open_memstream(&R->lock, &R->lock_len);
    if (!f)
        return r1_err_set(R1_ENOMEM, "out of memory");
    int rc = r1_recipe_write_yaml(R->r, f);
    fclose(f);
    return rc ? rc : r1_recipe_hash(R->r, R->hash);
}

/* The dotted key path of line i of a resolved recipe (as r1_recipe_write_yaml writes
 * it: two-space indents, list items "- name: x" named by their name). */
static void key_path(char **lines, int i, char *out, size_t cap)
{
    char parts[8][96];
    int np = 0, indent = 1 << 30;
    for (int j = i; j >= 0 && np < 8; j--) {
        const char *l = lines[j];
        int ind = (int)strspn(l, " ");
        int item = l[ind] == '-';
        int kind = item ? ind + 2 : ind; /* indentation of the key on that line */
        if (j != i && (item ? ind : kind) >= indent)
            continue;
        if (item && j != i) { /* the list item: its name, then its list's key above */
            const char *nm = strstr(l, "name:");
            snprintf(parts[np++], sizeof(parts[0]), "%.*s",
                     nm ? (int)strcspn(nm + 6, "\n") : 1, nm ? nm + 6 : "?");
            indent = ind;
            continue;
        }
        const char *k = l + ind + (item ? 2 : 0);
        snprintf(parts[np++], sizeof(parts[0]), "%.*s", (int)strcspn(k, ":"), k);
        indent = kind;
        if (indent == 0)
            break;
    }
    out[0] = '\0';
    size_t used = 0;
    for (int p = np - 1; p >= 0; p--) {
        char *q = parts[p];
        if (*q == '"') { /* names are written quoted */
            q++;
            q[strcspn(q, "\"")] = '\0';
        }
        int n = snprintf(out + used, cap - used, "%s%s", used ? "." : "", q);
        if (n < 0 || (size_t)n >= cap - used)
            break;
        used += (size_t)n;
    }
}

/* Splits text into lines in place (for key_path). */
static int split_lines(char *text, char **lines, int max)
{
    int n = 0;
    for (char *p = text; *p && n < max;) {
        lines[n++] = p;
        char *e = strchr(p, '\n');
        if (!e)
            break;
        *e = '\0';
        p = e + 1;
    }
    return n;
}

/* Names the keys whose values differ between two locks (for the resume refusal). */
static void describe_diff(const char *old, const char *new, char *out, size_t cap)
{
    enum { MAXL = 4096 };
    char *a = strdup(old), *b = strdup(new);
    char **la = malloc(MAXL * sizeof(char *)), **lb = malloc(MAXL * sizeof(char *));
    out[0] = '\0';
    if (a && b && la && lb) {
        int na = split_lines(a, la, MAXL), nb = split_lines(b, lb, MAXL), shown = 0;
        size_t used = 0;
        for (int i = 0; i < na && i < nb && shown < 4; i++) {
            if (strcmp(la[i], lb[i]) == 0)
                continue;
            char path[256];
            key_path(la, i, path, sizeof(path));
            const char *va = strchr(la[i], ':'), *vb = strchr(lb[i], ':');
            int n = snprintf(out + used, cap - used, "%s%s: %s -> %s", shown ? "; " : "", path,
                             va ? va + 2 : la[i], vb ? vb + 2 : lb[i]);
            if (n < 0 || (size_t)n >= cap - used)
                break;
            used += (size_t)n;
            shown++;
        }
        if (shown == 0 && na != nb)
            snprintf(out, cap, "stages or keys were added or removed");
    }
    free(a);
    free(b);
    free(la);
    free(lb);
}

static int write_run_info(const struct run *R)
{
    json_t *sets = json_array();
    for (int i = 0; i < R->o->n_sets; i++)
        json_array_append_new(sets, json_string(R->o->sets[i]));
    /* absolute, so r1 resume works from any working directory */
    char abs[4096];
    const char *recipe = realpath(R->r->path, abs) ? abs : R->r->path;
    json_t *o = json_pack("{s:s, s:s, s:o, s:i}", "format", "r1-run-1", "recipe", recipe, "sets",
                          sets, "world_size", R->dist ? R->dist->world : 1);
    char *text = o ? json_dumps(o, JSON_INDENT(2) | JSON_PRESERVE_ORDER) : NULL;
    json_decref(o);
    if (!text)
        return r1_err_set(R1_ENOMEM, "out of memory");
    char path[4200];
    snprintf(path, sizeof(path), "%s/run.json", R->dir);
    int rc = r1_file_write_atomic(path, text, strlen(text));
    free(text);
    return rc;
}

int r1_pipeline_read_run_info(struct r1_pipeline_run_info *info, const char *run_dir)
{
    char path[4200];
    memset(info, 0, sizeof(*info));
    snprintf(path, sizeof(path), "%s/run.json", run_dir);
    json_error_t e;
    json_t *o = json_load_file(path, 0, &e), *sets = NULL;
    const char *recipe = NULL;
    if (!o || json_unpack(o, "{s:s, s:o}", "recipe", &recipe, "sets", &sets) != 0 ||
        !json_is_array(sets)) {
        json_decref(o);
        return r1_err_set(R1_EINVAL, "%s: not an r1 run directory (no readable run.json); "
                          "start one with r1 run RECIPE", run_dir);
    }
    info->recipe_path = strdup(recipe);
    json_t *ws = json_object_get(o, "world_size"); /* absent: a run of one process */
    info->world_size = json_is_integer(ws) ? (int)json_integer_value(ws) : 1;
    info->n_sets = (int)json_array_size(sets);
    info->sets = calloc((size_t)info->n_sets + 1, sizeof(char *));
    for (int i = 0; info->sets && i < info->n_sets; i++) {
        const char *s = json_string_value(json_array_get(sets, (size_t)i));
        info->sets[i] = strdup(s ? s : "");
    }
    json_decref(o);
    if (!info->recipe_path || !info->sets) {
        r1_pipeline_run_info_release(info);
        return r1_err_set(R1_ENOMEM, "out of memory");
    }
    return 0;
}

void r1_pipeline_run_info_release(struct r1_pipeline_run_info *info)
{
    for (int i = 0; info->sets && i < info->n_sets; i++)
        free(info->sets[i]);
    free(info->sets);
    free(info->recipe_path);
    memset(info, 0, sizeof(*info));
}

/* metrics.jsonl as of the newest checkpoint (lines written after it are dropped). */
static int restore_metrics(struct run *R)
{
    char path[4200];
    snprintf(path, sizeof(path), "%s/metrics.jsonl", R->dir);
    struct r1_checkpoint *ck = NULL;
    char *data = NULL;
    size_t len = 0;
    int rc = r1_checkpoint_latest(&ck, R->dir, NULL);
    if (!rc && ck) {
        struct r1_ledger *lg = NULL;
        rc = r1_ledger_open(&lg, R->dir);
        if (!rc)
            rc = r1_ledger_read_file(lg, ck->commit_id, "metrics.jsonl", &data, &len);
        r1_ledger_free(lg);
    }
    r1_checkpoint_free(ck);
    if (rc)
        return rc;
    rc = r1_file_write_atomic(path, data ? data : "", len);
    free(data);
    if (rc)
        return rc;
    R->metrics = fopen(path, "ab");
    return R->metrics ? 0 : r1_err_set(R1_EIO, "%s: cannot append (%s)", path, strerror(errno));
}

/* DIR/samples/<stage>.jsonl as of the newest checkpoint: lines of later steps of the
 * stage that checkpointed last are dropped, and the files of stages after it removed. */
static int restore_samples(struct run *R)
{
    struct r1_checkpoint *ck = NULL;
    int rc = r1_checkpoint_latest(&ck, R->dir, NULL);
    if (rc)
        return rc;
    int last = -1;
    for (int i = 0; ck && i < R->r->n_stages; i++)
        if (strcmp(R->r->stages[i].name, ck->stage) == 0)
            last = i;
    char path[4200];
    for (int i = last < 0 ? 0 : last; i < R->r->n_stages && !rc; i++) {
        snprintf(path, sizeof(path), "%s/samples/%s.jsonl", R->dir, R->r->stages[i].name);
        if (i > last || !ck) {
            if (remove(path) != 0 && errno != ENOENT)
                rc = r1_err_set(R1_EIO, "%s: cannot remove (%s)", path, strerror(errno));
            continue;
        }
        char *data = NULL;
        size_t len = 0;
        if (access(path, F_OK) != 0 || (rc = r1_file_read(path, &data, &len)))
            continue;
        size_t keep = 0; /* bytes of the leading lines with step <= the checkpoint's */
        for (size_t at = 0; at < len;) {
            char *nl = memchr(data + at, '\n', len - at);
            size_t end = nl ? (size_t)(nl - data) + 1 : len;
            json_t *o = json_loadb(data + at, end - at, 0, NULL);
            json_int_t step = json_integer_value(json_object_get(o, "step"));
            json_decref(o);
            if (!o || !nl || step > ck->step)
                break;
            keep = at = end;
        }
        if (keep < len)
            rc = r1_file_write_atomic(path, data, keep);
        free(data);
    }
    r1_checkpoint_free(ck);
    return rc;
}

static int append_samples(struct run *R, const char *stage, const char *text)
{
    char path[4200];
    snprintf(path, sizeof(path), "%s/samples", R->dir);
    if (mkdir(path, 0777) != 0 && errno != EEXIST)
        return r1_err_set(R1_EIO, "%s: cannot create (%s)", path, strerror(errno));
    snprintf(path, sizeof(path), "%s/samples/%s.jsonl", R->dir, stage);
    FILE *f = fopen(path, "ab");
    size_t n = strlen(text);
    int ok = f && fwrite(text, 1, n, f) == n;
    if (f && fclose(f) != 0)
        ok = 0;
    return ok ? 0 : r1_err_set(R1_EIO, "%s: cannot append (%s)", path, strerror(errno));
}

/* Test hook (as git's GIT_TEST_* variables): R1_TEST_CRASH="<stage>:<step>:<where>"
 * kills the process with SIGKILL at that point, so the resume tests can stop a run
 * inside a checkpoint write, after a step or between stages deterministically;
 * R1_TEST_HANG (same form) makes it wait forever there instead; R1_TEST_CRASH_RANK=N
 * limits either to rank N of an mpirun job. */
static void crash_point(const struct run *R, const char *stage, int64_t step, const char *where)
{
    const char *want = getenv("R1_TEST_CRASH"), *hang = getenv("R1_TEST_HANG");
    if (!want && !hang)
        return;
    const char *rank = getenv("R1_TEST_CRASH_RANK"); /* under mpirun: only that rank */
    if (rank && R->dist && atoi(rank) != R->dist->rank)
        return;
    char here[256];
    snprintf(here, sizeof(here), "%s:%" PRId64 ":%s", stage, step, where);
    if (want && strcmp(want, here) == 0)
        raise(SIGKILL);
    while (hang && strcmp(hang, here) == 0) /* a rank that stops answering */
        sleep(60);
}

static int save_checkpoint(struct run *R, int si, const struct r1_stage_ops *ops, void *st,
                           char parent[65])
{
    const struct r1_stage_cfg *s = &R->r->stages[si];
    int64_t done, total;
    int n_data = 0, n_files = 0;
    const struct r1_data_hash *data = ops->data(st, &n_data);
    const char *const *files = NULL;
    ops->progress(st, &done, &total);
    struct r1_checkpoint_desc d = {s->name, r1_stage_kind_name(s->kind), done,
                                   parent[0] ? parent : NULL, R->hash, (uint64_t)R->r->seed,
                                   data, n_data};
    struct r1_checkpoint *ck = NULL;
    char path[4200], summary[256], *metrics = NULL;
    size_t mlen = 0;
    /* ZeRO-1: the ranks but 0 write their optimizer shards into the lead's checkpoint */
    struct r1_optim *opt = ops->optim ? ops->optim(st) : NULL;
    bool shards = opt && opt->dist && opt->dist->world > 1;
    int rc = R->lead ? r1_checkpoint_begin(&ck, R->dir, &d) : 0;
    if (shards) {
        char tmp[4096] = {0};
        if (R->lead && !rc)
            snprintf(tmp, sizeof(tmp), "%s", r1_checkpoint_tmp_dir(ck));
        if ((rc = r1_dist_agree(R->dist, rc)) || (rc = r1_dist_bcast(R->dist, tmp, sizeof(tmp), 0)))
            goto out;
        if (!R->lead) {
            snprintf(path, sizeof(path), "%s/%s", tmp, r1_optim_shard_file(opt));
            rc = r1_optim_save(opt, path);
        }
        if ((rc = r1_dist_agree(R->dist, rc)) || !R->lead)
            goto out;
    } else if (rc || !R->lead) {
        goto out;
    }
    if ((rc = ops->save(st, r1_checkpoint_tmp_dir(ck), &files, &n_files)))
        goto out;
    for (int i = 0; i < n_files; i++) {
        snprintf(path, sizeof(path), "%s/%s", r1_checkpoint_tmp_dir(ck), files[i]);
        if ((rc = r1_checkpoint_add_file(ck, files[i], path)))
            goto out;
    }
    for (int r = 1; shards && r < opt->dist->world; r++) {
        char name[64];
        r1_optim_shard_name(name, sizeof(name), r, opt->dist->world);
        snprintf(path, sizeof(path), "%s/%s", r1_checkpoint_tmp_dir(ck), name);
        if ((rc = r1_checkpoint_add_file(ck, name, path)))
            goto out;
    }
    fflush(R->metrics);
    snprintf(path, sizeof(path), "%s/metrics.jsonl", R->dir);
    if ((rc = r1_file_read(path, &metrics, &mlen)))
        goto out;
    ops->summary(st, summary, sizeof(summary));
    crash_point(R, s->name, d.step, "before-commit");
    struct r1_checkpoint_commit_info info = {summary, R->lock, R->lock_len, metrics, mlen,
                                             R->r->path, R->o->force};
    if ((rc = r1_checkpoint_commit(ck, &info)))
        goto out;
    memcpy(parent, ck->manifest_sha256, 65);
out:
    free(metrics);
    r1_checkpoint_free(ck);
    return rc;
}

/* Builds the model of a source; *parent (may be NULL) gets the manifest of the stage
 * checkpoint it comes from ("" otherwise). */
static int open_source(struct run *R, const struct r1_model_source *src, struct r1_model **m,
                       struct r1_tokenizer **tok, char *parent)
{
    int rc;
    if (parent)
        parent[0] = '\0';
    if (src->kind == R1_SOURCE_SCRATCH) {
        struct r1_model_config c;
        if ((rc = r1_model_config_preset(&c, src->preset)) ||
            (rc = r1_model_create(m, &c, R->be)) ||
            (rc = r1_model_init_weights(*m, (uint64_t)R->r->seed)))
            return rc;
        const char *tp = R->r->tokenizer;
        if (!tp || strcmp(tp, "bytes") == 0)
            rc = r1_tokenizer_bytes_create(tok);
        else if (!(rc = r1_tokenizer_open(tok, tp)) && (*tok)->vocab_size > c.vocab_size)
            rc = r1_err_set(R1_EINVAL, "%s: model.tokenizer %s has %d tokens but preset '%s' a "
                            "vocabulary of %d; pick a preset that fits the tokenizer",
                            R->r->path, tp, (*tok)->vocab_size, src->preset, c.vocab_size);
        if (rc) {
            r1_model_free(*m);
            r1_tokenizer_free(*tok);
            *m = NULL;
            *tok = NULL;
        }
        return rc;
    }
    const char *dir = src->spec;
    struct r1_checkpoint *ck = NULL;
    if (src->kind == R1_SOURCE_STAGE) {
        const char *from = R->r->stages[src->stage].name;
        if ((rc = r1_checkpoint_latest(&ck, R->dir, from)))
            return rc;
        if (!ck)
            return r1_err_set(R1_ESTATE, "stage '%s' has no checkpoint to load a model from",
                              from);
        dir = ck->dir;
        if (parent)
            memcpy(parent, ck->manifest_sha256, 65);
    }
    rc = r1_model_open(m, tok, R->be, dir);
    r1_checkpoint_free(ck);
    return rc;
}

/* Builds the model a stage starts from; *parent gets the manifest it continues. */
static int stage_model(struct run *R, const struct r1_stage_cfg *s, struct r1_model **m,
                       struct r1_tokenizer **tok, char parent[65])
{
    int rc = open_source(R, &s->init, m, tok, parent);
    if (rc == R1_ESTATE)
        r1_err_wrap(rc, "stage '%s' starts from stage '%s'", s->name, s->init.spec);
    return rc;
}

static int env_open_model(void *ctx, const struct r1_model_source *src, struct r1_model **m,
                          struct r1_tokenizer **tok)
{
    return open_source(ctx, src, m, tok, NULL);
}

/* data.stage: the dataset file in the final checkpoint of that stage. */
static int stage_data_path(struct run *R, const struct r1_stage_cfg *s, char *out, size_t cap)
{
    out[0] = '\0';
    if (s->data.stage_index < 0)
        return 0;
    struct r1_checkpoint *ck = NULL;
    int rc = r1_checkpoint_latest(&ck, R->dir, s->data.stage);
    if (rc)
        return rc;
    if (ck)
        snprintf(out, cap, "%s/" R1_STAGE_DATASET_FILE, ck->dir);
    r1_checkpoint_free(ck);
    if (!ck || access(out, R_OK) != 0)
        return r1_err_set(R1_ESTATE, "stage '%s' reads the data of stage '%s', which has %s; "
                          "only a finished rejection_sft stage produces a dataset", s->name,
                          s->data.stage,
                          ck ? "produced no " R1_STAGE_DATASET_FILE : "no checkpoint");
    return 0;
}

static void emit(struct run *R, const char *stage, const char *what,
                 const struct r1_stage_metrics *m)
{
    if (R->o->on_event)
        R->o->on_event(R->o->user, stage, what, m);
}

/* One metrics.jsonl line: integers exactly, other numbers with 6 significant digits. */
static void write_metrics(FILE *f, const char *stage, const struct r1_stage_metrics *m)
{
    if (!f) /* not the lead rank */
        return;
    fprintf(f, "{\"stage\":\"%s\",\"step\":%" PRId64, stage, m->step);
    for (int i = 0; i < m->n; i++) {
        double v = m->values[i];
        if (v == (double)(long long)v && v > -9e15 && v < 9e15)
            fprintf(f, ",\"%s\":%lld", m->keys[i], (long long)v);
        else
            fprintf(f, ",\"%s\":%.6g", m->keys[i], v);
    }
    fputs("}\n", f);
}

/* Held-out numbers of the stage's current model as a metrics line (none: nothing). */
static int evaluate(struct run *R, const char *stage, const struct r1_stage_ops *ops, void *st,
                    int64_t step)
{
    if (!ops->evaluate)
        return 0;
    struct r1_stage_metrics ev = {0};
    int rc = ops->evaluate(st, &ev);
    if (rc)
        return r1_err_wrap(rc, "stage '%s': evaluation at step %" PRId64, stage, step);
    if (ev.n == 0)
        return 0;
    ev.step = step;
    write_metrics(R->metrics, stage, &ev);
    emit(R, stage, "eval", &ev);
    return 0;
}

static int run_stage(struct run *R, int si)
{
    const struct r1_stage_cfg *s = &R->r->stages[si];
    const struct r1_stage_ops *ops = r1_stage_ops_find(s->kind);
    struct r1_checkpoint *ck = NULL;
    struct r1_model *m = NULL;
    struct r1_tokenizer *tok = NULL;
    void *st = NULL;
    char parent[65];
    int64_t done, total;
    struct r1_ledger *lg = NULL;
    int rc = r1_ledger_open(&lg, R->dir);
    if (!rc)
        rc = r1_ledger_has_stage_tag(lg, s->name);
    r1_ledger_free(lg);
    lg = NULL;
    if (rc < 0)
        return rc;
    if (rc == 1) { /* finished (tagged): nothing to load */
        emit(R, s->name, "done", NULL);
        return 0;
    }
    if ((rc = r1_checkpoint_latest(&ck, R->dir, s->name)))
        return rc;
    char data_path[4200];
    rc = stage_model(R, s, &m, &tok, parent);
    if (!rc)
        rc = stage_data_path(R, s, data_path, sizeof(data_path));
    if ((rc = r1_dist_agree(R->dist, rc)))
        goto out;
    r1_model_set_recompute(m, s->recompute);
    rc = r1_model_set_precision(m, s->precision == R1_PRECISION_BF16 ? R1_BF16 : R1_F32);
    if ((rc = r1_dist_agree(R->dist, rc ? r1_err_wrap(rc, "stage '%s': precision", s->name) : 0)))
        goto out;
    const char *chat = NULL;
    if ((rc = r1_chat_template_resolve(R->r->chat_template, tok->chat_template, &chat))) {
        rc = r1_err_wrap(rc, "%s: model.chat_template", R->r->path);
        goto out;
    }
    struct r1_stage_env env = {R->be, R->r, si, m, tok, R->dir, data_path[0] ? data_path : NULL,
                               env_open_model, R, chat, R->dist};
    if ((rc = r1_dist_agree(R->dist, ops->init(&st, &env))))
        goto out;
    ops->progress(st, &done, &total);
    if (R->o->on_plan) {
        struct r1_pipeline_stage_plan plan = {
            s->name, r1_stage_kind_name(s->kind), ck && ck->step < total ? ck->step : 0, total,
            m->n_params, m->params.cap, m->grads.cap, 2 * m->grads.cap, m->acts.cap, m->w16.cap,
            0, 0};
        const struct r1_op_sizes held_only = {0};
        if (R->be->ops->reserve)
            R->be->ops->reserve(R->be->ctx, &held_only, &plan.workspace_bytes);
        if (s->kind == R1_STAGE_REJECTION_SFT) /* samples only: no optimizer */
            plan.optim_bytes = 0;
        struct r1_optim *opt = ops->optim ? ops->optim(st) : NULL;
        if (opt) /* this rank's share under ZeRO-1 */
            plan.optim_bytes = opt->state.cap;
        size_t own = plan.param_bytes + plan.grad_bytes + plan.optim_bytes +
                     plan.activation_bytes + plan.param16_bytes;
        plan.other_bytes = R->be->arena_bytes > own ? R->be->arena_bytes - own : 0;
        if (!ck || ck->step < total)
            R->o->on_plan(R->o->user, &plan);
    }
    if (ck) {
        if (ck->step >= total) {
            emit(R, s->name, "done", NULL);
            goto out;
        }
        if ((rc = r1_dist_agree(R->dist, ops->load(st, ck->dir))))
            goto out;
        memcpy(parent, ck->manifest_sha256, 65);
        emit(R, s->name, "resume", NULL);
    } else {
        emit(R, s->name, "start", NULL);
    }
    struct r1_stage_metrics mt = {0};
    int64_t save_every = s->save_every > 0 ? s->save_every : total;
    if (!ck && (rc = r1_dist_agree(R->dist, evaluate(R, s->name, ops, st, 0))))
        goto out;
    while (!ops->finished(st)) {
        rc = r1_dist_agree(R->dist, ops->step(st, &mt));
        if (rc) {
            if (rc == R1_ENUMERIC) /* nothing of the bad step is saved */
                r1_err_wrap(rc, "stage '%s' stopped; its last good checkpoint is kept%s", s->name,
                            parent[0] ? "" : " (it has none yet)");
            goto out;
        }
        crash_point(R, s->name, mt.step, "step");
        write_metrics(R->metrics, s->name, &mt);
        emit(R, s->name, "step", &mt);
        if (R->lead && mt.samples && (rc = append_samples(R, s->name, mt.samples)))
            goto out;
        if ((ops->finished(st) || (s->eval_every > 0 && mt.step % s->eval_every == 0)) &&
            (rc = r1_dist_agree(R->dist, evaluate(R, s->name, ops, st, mt.step))))
            goto out;
        /* a stop request seen by any rank stops all at the same step */
        int stop = r1_dist_any(R->dist, R->o->stop && *R->o->stop);
        if (mt.step % save_every == 0 || ops->finished(st) || stop) {
            rc = save_checkpoint(R, si, ops, st, parent); /* rank 0 writes; shards on all */
            if ((rc = r1_dist_agree(R->dist, rc)))
                goto out;
            emit(R, s->name, "checkpoint", &mt);
        }
        if (stop) {
            rc = r1_err_set(R1_EINTR, "interrupted at %s step %" PRId64 "; a checkpoint was "
                            "written, continue with r1 resume %s", s->name, mt.step, R->dir);
            goto out;
        }
    }
    if (R->lead && !(rc = r1_ledger_open(&lg, R->dir)))
        rc = r1_ledger_tag_stage(lg, s->name);
    r1_ledger_free(lg);
    lg = NULL;
    /* every rank waits for the tag before any reads the ledger for the next stage */
    if (!(rc = r1_dist_agree(R->dist, rc))) {
        emit(R, s->name, "finished", &mt);
        crash_point(R, s->name, mt.step, "finished");
    }
out:
    if (st)
        ops->free(st);
    r1_tokenizer_free(tok);
    r1_model_free(m);
    r1_checkpoint_free(ck);
    return rc;
}

/* Tells on_header what will run: the recipe, the backend and one row per stage with
 * the parameter count of its init source where that is known without loading it. */
static int emit_header(struct run *R)
{
    if (!R->o->on_header)
        return 0;
    int n = R->r->n_stages;
    struct r1_pipeline_stage_info *rows = calloc((size_t)(n ? n : 1), sizeof(*rows));
    if (!rows)
        return r1_err_set(R1_ENOMEM, "out of memory");
    for (int i = 0; i < n; i++) {
        const struct r1_stage_cfg *s = &R->r->stages[i];
        const struct r1_model_source *src = &s->init;
        struct r1_model_config c;
        rows[i] = (struct r1_pipeline_stage_info){s->name, r1_stage_kind_name(s->kind), src->spec,
                                                  s->steps, s->epochs, -1};
        if ((src->kind == R1_SOURCE_SCRATCH && r1_model_config_preset(&c, src->preset) == 0) ||
            ((src->kind == R1_SOURCE_GGUF || src->kind == R1_SOURCE_HFDIR) &&
             r1_model_config_open(&c, src->spec) == 0))
            rows[i].n_params = r1_model_config_n_params(&c);
        else if (src->kind == R1_SOURCE_STAGE && src->stage >= 0 && src->stage < i)
            rows[i].n_params = rows[src->stage].n_params;
    }
    char backend[300];
    const char *dev = r1_backend_device(R->be);
    if (strcmp(dev, R->be->ops->name) == 0)
        snprintf(backend, sizeof(backend), "%s", dev);
    else
        snprintf(backend, sizeof(backend), "%s (%s)", R->be->ops->name, dev);
    struct r1_pipeline_header h = {R->r->name, R->r->path,  R->hash, R->dir, backend,
                                   R->o->threads, R->o->resume, n, rows,
                                   R->dist ? R->dist->world : 1, r1_dist_transport(R->dist)};
    R->o->on_header(R->o->user, &h);
    free(rows);
    return 0;
}

/* DIR/status.json: how the last r1 run/resume in DIR ended (not part of the ledger:
 * "running" while a process works, "finished", "interrupted" or "failed" with the
 * stage and the message).  Read by r1 status. */
static void write_status(const struct run *R, const char *state, const char *stage,
                         const char *message)
{
    if (!R->lead)
        return;
    json_t *o = json_pack("{s:s, s:I}", "state", state, "pid", (json_int_t)getpid());
    if (!o)
        return;
    if (stage)
        json_object_set_new(o, "stage", json_string(stage));
    if (message)
        json_object_set_new(o, "message", json_string(message));
    char *text = json_dumps(o, JSON_INDENT(2) | JSON_PRESERVE_ORDER);
    json_decref(o);
    char path[4200];
    snprintf(path, sizeof(path), "%s/status.json", R->dir);
    if (text) {
        /* best effort: a status file that cannot be written does not stop training */
        int keep = r1_err_code();
        char saved[1024];
        snprintf(saved, sizeof(saved), "%s", r1_err_last());
        if (r1_file_write_atomic(path, text, strlen(text)) != 0 && keep)
            r1_err_set(keep, "%s", saved);
        free(text);
    }
}

static int dir_has_run(const char *dir)
{
    char p[4200];
    snprintf(p, sizeof(p), "%s/run.json", dir);
    if (access(p, F_OK) == 0)
        return 1;
    snprintf(p, sizeof(p), "%s/.git", dir);
    return access(p, F_OK) == 0;
}

static int mkdirs(const char *path)
{
    char buf[4096];
    snprintf(buf, sizeof(buf), "%s", path);
    for (char *p = buf + 1; *p; p++)
        if (*p == '/') {
            *p = '\0';
            if (mkdir(buf, 0777) != 0 && errno != EEXIST)
                return r1_err_set(R1_EIO, "%s: cannot create (%s)", buf, strerror(errno));
            *p = '/';
        }
    if (mkdir(buf, 0777) != 0 && errno != EEXIST)
        return r1_err_set(R1_EIO, "%s: cannot create (%s)", buf, strerror(errno));
    return 0;
}

/* What only the lead rank does before the stages: the run directory, the recipe lock, the
 * one-writer lock, the ledger, metrics and samples as of the newest checkpoint. */
static int lead_setup(struct run *R)
{
    const struct r1_pipeline_opts *o = R->o;
    char path[4200];
    int rc;
    snprintf(path, sizeof(path), "%s/recipe.lock.yaml", R->dir);
    if (!o->resume) {
        if (dir_has_run(R->dir))
            return r1_err_set(R1_EINVAL, "%s already holds a run; continue it with 'r1 resume %s' "
                              "or choose another --run-dir", R->dir, R->dir);
        if ((rc = mkdirs(R->dir)) || (rc = r1_file_write_atomic(path, R->lock, R->lock_len)) ||
            (rc = write_run_info(R)))
            return rc;
    } else {
        char *old = NULL;
        size_t old_len = 0;
        if ((rc = r1_file_read(path, &old, &old_len)))
            return r1_err_set(R1_EINVAL, "%s: not an r1 run directory (no recipe.lock.yaml)",
                              R->dir);
        int same = old_len == R->lock_len && memcmp(old, R->lock, old_len) == 0;
        if (!same && !o->force) {
            char what[600];
            describe_diff(old, R->lock, what, sizeof(what));
            free(old);
            return r1_err_set(R1_EINVAL, "%s: the recipe changed since the run started (%s); "
                              "restore it, or continue anyway with --force (recorded in the "
                              "ledger)", R->r->path, what);
        }
        free(old);
        struct r1_pipeline_run_info info;
        int world = R->dist ? R->dist->world : 1;
        if ((rc = r1_pipeline_read_run_info(&info, R->dir)))
            return rc;
        int was = info.world_size;
        r1_pipeline_run_info_release(&info);
        if (was != world) {
            char how[64];
            snprintf(how, sizeof(how), was == 1 ? "one process (no mpirun)" : "mpirun -np %d",
                     was);
            return r1_err_set(R1_EINVAL, "%s: the run was started by %d process%s and this resume "
                              "has %d; resume it with %s", R->dir, was, was == 1 ? "" : "es",
                              world, how);
        }
        if (!same && (rc = r1_file_write_atomic(path, R->lock, R->lock_len)))
            return rc;
    }
    /* one writer per run directory: the kernel drops this lock when its holder dies,
     * even by kill -9, so holding it proves git lock files left in .git are stale */
    snprintf(path, sizeof(path), "%s/.r1.lock", R->dir);
    R->lock_fd = open(path, O_RDWR | O_CREAT | O_CLOEXEC, 0666);
    if (R->lock_fd < 0 || flock(R->lock_fd, LOCK_EX | LOCK_NB) != 0)
        return r1_err_set(R1_EINVAL, "%s: another r1 process is working in this run directory; "
                          "wait for it to finish", R->dir);
    if ((rc = r1_ledger_clear_stale_locks(R->dir)))
        return rc;
    struct r1_ledger *lg = NULL; /* created here, so a run killed at any point resumes */
    rc = r1_ledger_open_or_init(&lg, R->dir);
    r1_ledger_free(lg);
    if (rc || (rc = restore_metrics(R)) || (rc = restore_samples(R)))
        return rc;
    return 0;
}

int r1_pipeline_run(const struct r1_pipeline_opts *o, struct r1_recipe_diag *diag)
{
    struct run R = {.o = o, .lock_fd = -1, .dist = o->dist, .lead = !o->dist || o->dist->rank == 0};
    int rc = r1_recipe_load(&R.r, o->recipe_path, o->sets, o->n_sets, diag);
    if (!rc && !(rc = r1_pipeline_check(R.r)))
        rc = lock_recipe(&R);
    if ((rc = r1_dist_agree(R.dist, rc))) /* every rank reads the same recipe */
        goto out;
    if (o->run_dir)
        snprintf(R.dir, sizeof(R.dir), "%s", o->run_dir);
    else
        snprintf(R.dir, sizeof(R.dir), "runs/%s", R.r->name);
    /* the other ranks wait for the lead's set-up, and stop with it when it fails */
    if ((rc = r1_dist_agree(R.dist, R.lead ? lead_setup(&R) : 0)))
        goto out;
    enum r1_backend_kind bk = R.r->backend == R1_RECIPE_BACKEND_CUDA  ? R1_BACKEND_CUDA
                              : R.r->backend == R1_RECIPE_BACKEND_CPU ? R1_BACKEND_CPU
                                                                      : R1_BACKEND_AUTO;
    int device = R.dist ? R.dist->local_rank : 0; /* one GPU per process of a node */
    if ((rc = r1_dist_agree(R.dist, r1_backend_create_on(&R.be, bk, o->threads, device))) ||
        (rc = r1_dist_attach(R.dist, R.be)) || (rc = emit_header(&R)))
        goto out;
    write_status(&R, "running", NULL, NULL);
    int si = 0;
    for (; si < R.r->n_stages && !rc; si++)
        rc = run_stage(&R, si);
    if (!rc)
        write_status(&R, "finished", NULL, NULL);
    else
        write_status(&R, rc == R1_EINTR ? "interrupted" : "failed", R.r->stages[si - 1].name,
                     r1_err_last());
out:
    if (R.metrics)
        fclose(R.metrics);
    if (R.lock_fd >= 0)
        close(R.lock_fd);
    r1_dist_detach(R.dist); /* NCCL's communicator works on the backend's memory */
    r1_backend_free(R.be);
    free(R.lock);
    r1_recipe_free(R.r);
    return rc;
}
