/* recipe.c - recipe loading, second half: schema-driven conversion of the merged tree
 * (built from YAML, `extends` and `--set` in recipe-yaml.c) into struct r1_recipe,
 * cross-key validation, and the public API.
 *
 * Every node remembers the file it came from and its 1-based line:col, so a problem
 * anywhere (a parent recipe, a --set) is reported where it is.  Nothing stops at the
 * first problem: each is collected and all are returned, sorted by file (the recipe
 * first, then its parents, then --set) and position.  The schema lives in
 * recipe-schema.c. */
#include "core/recipe.h"

#include <errno.h>
#include <math.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "core/err.h"
#include "core/model.h"
#include "core/recipe-internal.h"

/* ---- schema-driven conversion ---- */

static const struct r1_recipe_key *find_key(const char *section, const char *key)
{
    int n;
    const struct r1_recipe_key *t = r1_recipe_schema(&n);
    for (int i = 0; i < n; i++)
        if (strcmp(t[i].section, section) == 0 && strcmp(t[i].key, key) == 0)
            return &t[i];
    return NULL;
}

static bool applies(const struct r1_recipe_key *k, int kind)
{
    return kind < 0 || k->kinds == 0 || (k->kinds & (1u << kind));
}

static int edit_distance(const char *a, const char *b)
{
    size_t la = strlen(a), lb = strlen(b);
    if (la > 63 || lb > 63)
        return 99;
    int row[64];
    for (size_t j = 0; j <= lb; j++)
        row[j] = (int)j;
    for (size_t i = 1; i <= la; i++) {
        int diag = row[0];
        row[0] = (int)i;
        for (size_t j = 1; j <= lb; j++) {
            int up = row[j];
            int best = diag + (a[i - 1] != b[j - 1]);
            if (up + 1 < best)
                best = up + 1;
            if (row[j - 1] + 1 < best)
                best = row[j - 1] + 1;
            row[j] = best;
            diag = up;
        }
    }
    return row[lb];
}

static void unknown_key(struct loader *ld, const char *section, const struct node *key)
{
    int n, best = 99;
    const struct r1_recipe_key *t = r1_recipe_schema(&n), *pick = NULL;
    const char *nested = NULL;
    char list[512] = "";
    for (int i = 0; i < n; i++) {
        if (strcmp(t[i].section, section) != 0)
            continue;
        size_t l = strlen(list);
        snprintf(list + l, sizeof(list) - l, "%s%s", l ? ", " : "", t[i].key);
        int d = edit_distance(key->text, t[i].key);
        if (d < best) {
            best = d;
            pick = &t[i];
        }
        if (t[i].type == R1_KEY_MAP && !nested && find_key(t[i].choices, key->text))
            nested = t[i].key;
    }
    int limit = strlen(key->text) <= 4 ? 1 : strlen(key->text) <= 8 ? 2 : 3;
    if (pick && best <= limit)
        r1_recipe_problem(ld, AT(key), "unknown key '%s' (did you mean '%s'?)", key->text,
                          pick->key);
    else if (nested)
        r1_recipe_problem(ld, AT(key), "unknown key '%s' (did you mean '%s.%s'?)", key->text,
                          nested, key->text);
    else
        r1_recipe_problem(ld, AT(key), "unknown key '%s' (valid here: %s)", key->text, list);
}

static const char *type_desc(const struct r1_recipe_key *k)
{
    switch (k->type) {
    case R1_KEY_INT:
        return "an integer";
    case R1_KEY_FLOAT:
        return "a number";
    case R1_KEY_BOOL:
        return "true or false";
    case R1_KEY_STRING:
        return "a string";
    case R1_KEY_ENUM:
        return "one of the names";
    case R1_KEY_MAP:
        return "a map of keys";
    default:
        return "a list";
    }
}

/* Parses text as k's type into dst; on failure writes why and returns -1. */
static int parse_value(const struct r1_recipe_key *k, const char *text, bool plain, char *dst,
                       char *why, size_t cap, bool *oom)
{
    char *end = NULL;
    char range[96];
    r1_recipe_key_range(k, range, sizeof(range));
    errno = 0;
    switch (k->type) {
    case R1_KEY_INT: {
        long long v = plain ? strtoll(text, &end, 10) : 0;
        if (!plain || !text[0] || *end || errno) {
            snprintf(why, cap, "'%s' must be an integer, got %s'%s'", k->key,
                     plain ? "" : "the quoted string ", text);
            return -1;
        }
        if ((double)v < k->min || (double)v > k->max) {
            snprintf(why, cap, "'%s' is %lld, out of range %s", k->key, v, range);
            return -1;
        }
        memcpy(dst, &(int64_t){v}, sizeof(int64_t));
        return 0;
    }
    case R1_KEY_FLOAT: {
        double v = plain ? strtod(text, &end) : 0;
        if (!plain || !text[0] || *end || !isfinite(v)) {
            snprintf(why, cap, "'%s' must be a number, got %s'%s'", k->key,
                     plain ? "" : "the quoted string ", text);
            return -1;
        }
        bool lo = (k->flags & R1_KEY_MIN_OPEN) ? v > k->min : v >= k->min;
        bool hi = (k->flags & R1_KEY_MAX_OPEN) ? v < k->max : v <= k->max;
        if (!lo || !hi) {
            snprintf(why, cap, "'%s' is %g, out of range %s", k->key, v, range);
            return -1;
        }
        memcpy(dst, &(float){(float)v}, sizeof(float));
        return 0;
    }
    case R1_KEY_BOOL:
        if (plain && (strcmp(text, "true") == 0 || strcmp(text, "false") == 0)) {
            memcpy(dst, &(bool){text[0] == 't'}, sizeof(bool));
            return 0;
        }
        snprintf(why, cap, "'%s' must be true or false, got '%s'", k->key, text);
        return -1;
    case R1_KEY_STRING: {
        char *s = strdup(text);
        if (!s) {
            *oom = true;
            return 0;
        }
        char *old;
        memcpy(&old, dst, sizeof(old));
        free(old);
        memcpy(dst, &s, sizeof(s));
        return 0;
    }
    case R1_KEY_ENUM: {
        size_t tl = strlen(text);
        int idx = 0;
        for (const char *p = k->choices; p; idx++) {
            size_t l = strcspn(p, "|");
            if (l == tl && strncmp(p, text, l) == 0) {
                memcpy(dst, &idx, sizeof(int));
                return 0;
            }
            p = p[l] ? p + l + 1 : NULL;
        }
        snprintf(why, cap, "'%s' must be one of %s, got '%s'", k->key, k->choices, text);
        return -1;
    }
    default:
        return 0;
    }
}

static void fill_defaults(struct loader *ld, const char *section, char *base)
{
    int n;
    const struct r1_recipe_key *t = r1_recipe_schema(&n);
    char why[256];
    for (int i = 0; i < n; i++) {
        const struct r1_recipe_key *k = &t[i];
        if (strcmp(k->section, section) != 0)
            continue;
        if (k->type == R1_KEY_MAP)
            fill_defaults(ld, k->choices, base);
        else if (k->type != R1_KEY_LIST && k->def)
            parse_value(k, k->def, k->type != R1_KEY_STRING, base + k->offset, why, sizeof(why),
                        &ld->oom);
    }
}

static void apply_map(struct loader *ld, const char *section, char *base, const struct node *map,
                      int kind);

static void apply_list(struct loader *ld, const struct r1_recipe_key *k, char *base,
                       const struct node *seq, int kind)
{
    bool is_stage = strcmp(k->choices, "stage") == 0;
    if (seq->n == 0) {
        if (k->flags & R1_KEY_REQUIRED)
            r1_recipe_problem(ld, AT(seq), "'%s' needs at least one entry", k->key);
        return;
    }
    char *items = calloc((size_t)seq->n, k->item_size);
    if (!items) {
        ld->oom = true;
        return;
    }
    memcpy(base + k->offset, &items, sizeof(items));
    memcpy(base + k->count_offset, &seq->n, sizeof(int));
    if (is_stage)
        ld->stage_nodes = seq->vals;
    for (int j = 0; j < seq->n; j++) {
        char *item = items + (size_t)j * k->item_size;
        const struct node *v = seq->vals[j];
        fill_defaults(ld, k->choices, item);
        if (is_stage)
            ((struct r1_stage_cfg *)(void *)item)->kind = R1_STAGE_N_KINDS;
        if (v->kind != NODE_MAP) {
            r1_recipe_problem(ld, AT(v), "each entry of '%s' must be a map of keys, not %s", k->key,
                              r1_recipe_node_kind_name(v));
            continue;
        }
        int ik = kind;
        if (is_stage) {
            const struct node *kn = r1_recipe_map_get(v, "kind");
            const struct r1_recipe_key *kk = find_key("stage", "kind");
            char why[256];
            int idx;
            ik = -1;
            if (kn && kn->kind == NODE_SCALAR &&
                parse_value(kk, kn->text, kn->plain, (char *)&idx, why, sizeof(why), &ld->oom) == 0)
                ik = idx;
        }
        apply_map(ld, k->choices, item, v, ik);
    }
}

/* Reports required keys of section (applying to kind) that are missing from map. */
static void check_required(struct loader *ld, const char *section, const struct node *map,
                           const struct node *at, int kind, const char *prefix)
{
    int n;
    const struct r1_recipe_key *t = r1_recipe_schema(&n);
    for (int i = 0; i < n; i++) {
        const struct r1_recipe_key *k = &t[i];
        if (strcmp(k->section, section) != 0 || (k->kinds && kind < 0) || !applies(k, kind))
            continue;
        const struct node *v = map ? r1_recipe_map_get(map, k->key) : NULL;
        if (v && !r1_recipe_node_is_null(v))
            continue;
        if (k->flags & R1_KEY_REQUIRED)
            r1_recipe_problem(ld, AT(at), "missing required key '%s%s'", prefix, k->key);
        else if (k->type == R1_KEY_MAP && !v) {
            char sub[128];
            snprintf(sub, sizeof(sub), "%s%s.", prefix, k->key);
            check_required(ld, k->choices, NULL, at, kind, sub);
        }
    }
}

static void apply_map(struct loader *ld, const char *section, char *base, const struct node *map,
                      int kind)
{
    char why[256];
    for (int i = 0; i < map->n; i++) {
        const struct node *key = map->keys[i], *v = map->vals[i];
        const struct r1_recipe_key *k = find_key(section, key->text);
        if (!k || (k->flags & R1_KEY_NODUMP)) {
            unknown_key(ld, section, key);
            continue;
        }
        if (!applies(k, kind)) {
            char kinds[128] = "";
            for (int j = 0; j < R1_STAGE_N_KINDS; j++) {
                if (!(k->kinds & (1u << j)))
                    continue;
                size_t l = strlen(kinds);
                snprintf(kinds + l, sizeof(kinds) - l, "%s%s", l ? ", " : "",
                         r1_stage_kind_name((enum r1_stage_kind)j));
            }
            r1_recipe_problem(ld, AT(key), "'%s' does not apply to a %s stage (only to %s)",
                              key->text, r1_stage_kind_name((enum r1_stage_kind)kind), kinds);
            continue;
        }
        if (r1_recipe_node_is_null(v) && k->type != R1_KEY_STRING)
            continue; /* reported by check_required when it matters */
        if (r1_recipe_node_is_null(v) && k->type == R1_KEY_STRING) {
            if (k->flags & R1_KEY_REQUIRED)
                continue;
            char *old;
            memcpy(&old, base + k->offset, sizeof(old));
            free(old);
            old = NULL;
            memcpy(base + k->offset, &old, sizeof(old));
            continue;
        }
        if (k->type == R1_KEY_MAP) {
            if (v->kind != NODE_MAP)
                r1_recipe_problem(ld, AT(v), "'%s' must be a map of keys, not %s", k->key,
                                  r1_recipe_node_kind_name(v));
            else
                apply_map(ld, k->choices, base, v, kind);
            continue;
        }
        if (k->type == R1_KEY_LIST) {
            if (v->kind != NODE_SEQ)
                r1_recipe_problem(ld, AT(v), "'%s' must be a list, not %s", k->key,
                                  r1_recipe_node_kind_name(v));
            else
                apply_list(ld, k, base, v, kind);
            continue;
        }
        if (v->kind != NODE_SCALAR) {
            r1_recipe_problem(ld, AT(v), "'%s' must be %s, not %s", k->key, type_desc(k),
                              r1_recipe_node_kind_name(v));
            continue;
        }
        if (parse_value(k, v->text, v->plain, base + k->offset, why, sizeof(why), &ld->oom))
            r1_recipe_problem(ld, AT(v), "%s", why);
    }
    check_required(ld, section, map, map, kind, "");
}

/* ---- cross-key validation and resolution ---- */

/* The node at map.a.b (NULL-terminated key list), or fallback. */
static const struct node *node_at(const struct node *map, const struct node *fallback, ...)
{
    va_list ap;
    va_start(ap, fallback);
    const struct node *n = map;
    for (const char *k = va_arg(ap, const char *); k && n; k = va_arg(ap, const char *))
        n = r1_recipe_map_get(n, k);
    va_end(ap);
    return n ? n : fallback;
}

/* Resolves a path named at node `at` to an absolute one; NULL when it does not exist. */
static char *resolve_path(struct loader *ld, const struct node *at, const char *path)
{
    const struct source_file *f = &ld->files[at->src];
    char *joined = r1_recipe_join_path(ld, f->is_set ? NULL : f->name, path);
    if (!joined)
        return NULL;
    char *real = realpath(joined, NULL);
    free(joined);
    return real;
}

static int stage_index(const struct r1_recipe *r, const char *name)
{
    for (int i = 0; i < r->n_stages; i++)
        if (r->stages[i].name && strcmp(r->stages[i].name, name) == 0)
            return i;
    return -1;
}

/* Reports a reference from stage self (via key what) to stage j that is not earlier. */
static void bad_stage_ref(struct loader *ld, const struct node *at, const char *what,
                          const struct r1_recipe *r, int self, int j)
{
    if (j == self)
        r1_recipe_problem(ld, AT(at), "%s '%s' names this stage itself; name an earlier stage",
                          what, r->stages[j].name);
    else
        r1_recipe_problem(ld, AT(at),
                          "%s '%s' names a stage that comes later (stage %d of %d); only earlier "
                          "stages can be used",
                          what, r->stages[j].name, j + 1, r->n_stages);
}

static void list_earlier(const struct r1_recipe *r, int self, char *buf, size_t cap)
{
    buf[0] = '\0';
    for (int i = 0; i < self; i++) {
        size_t l = strlen(buf);
        snprintf(buf + l, cap - l, "%s%s", l ? ", " : "", r->stages[i].name ? r->stages[i].name : "?");
    }
    if (!buf[0])
        snprintf(buf, cap, "none");
}

/* model.init (self < 0) or stages[self].init: a preset, a path or an earlier stage. */
static void resolve_source_as(struct loader *ld, const struct r1_recipe *r,
                              struct r1_model_source *s, const struct node *at, int self,
                              const char *what);

static void resolve_source(struct loader *ld, const struct r1_recipe *r,
                           struct r1_model_source *s, const struct node *at, int self)
{
    resolve_source_as(ld, r, s, at, self, "init");
}

static void resolve_source_as(struct loader *ld, const struct r1_recipe *r,
                              struct r1_model_source *s, const struct node *at, int self,
                              const char *what)
{
    s->stage = -1;
    const char *spec = s->spec;
    int j = self >= 0 ? stage_index(r, spec) : -1;
    if (j >= 0) {
        if (j >= self) {
            bad_stage_ref(ld, at, what, r, self, j);
            return;
        }
        s->kind = R1_SOURCE_STAGE;
        s->stage = j;
        return;
    }
    if (strncmp(spec, "scratch:", 8) == 0) {
        struct r1_model_config cfg;
        if (r1_model_config_preset(&cfg, spec + 8) != 0) {
            r1_recipe_problem(ld, AT(at),
                              "%s '%s': unknown preset '%s' (presets: " R1_MODEL_PRESETS ")",
                              what, spec, spec + 8);
            return;
        }
        s->kind = R1_SOURCE_SCRATCH;
        s->preset = r1_recipe_xstrdup(ld, spec + 8);
        return;
    }
    char *real = resolve_path(ld, at, spec);
    struct stat st;
    if (!real || stat(real, &st) != 0) {
        char earlier[256];
        list_earlier(r, self < 0 ? 0 : self, earlier, sizeof(earlier));
        if (self >= 0)
            r1_recipe_problem(
                ld, AT(at),
                "%s '%s' is neither an earlier stage (%s), scratch:<preset>, nor an "
                "existing model directory or .gguf file",
                what, spec, earlier);
        else
            r1_recipe_problem(
                ld, AT(at),
                "%s '%s' is neither scratch:<preset> nor an existing model directory or "
                ".gguf file",
                what, spec);
        free(real);
        return;
    }
    size_t l = strlen(real);
    if (S_ISDIR(st.st_mode)) {
        char cfgpath[4200];
        snprintf(cfgpath, sizeof(cfgpath), "%s/config.json", real);
        if (stat(cfgpath, &st) != 0) {
            r1_recipe_problem(ld, AT(at), "%s '%s' is a directory without config.json", what, spec);
            free(real);
            return;
        }
        s->kind = R1_SOURCE_HFDIR;
    } else if (l > 5 && strcmp(real + l - 5, ".gguf") == 0) {
        s->kind = R1_SOURCE_GGUF;
    } else {
        r1_recipe_problem(ld, AT(at), "%s '%s' is a file but not a .gguf model", what, spec);
        free(real);
        return;
    }
    free(s->spec);
    s->spec = real;
}

/* Replaces *field (a path named at `at`) by its absolute form; reports it when missing. */
static void resolve_file(struct loader *ld, char **field, const struct node *at, const char *what)
{
    char *real = resolve_path(ld, at, *field);
    struct stat st;
    if (!real || stat(real, &st) != 0 || S_ISDIR(st.st_mode)) {
        r1_recipe_problem(ld, AT(at), "%s '%s' %s", what, *field,
                          real ? "is a directory, not a file" : "does not exist");
        free(real);
        return;
    }
    free(*field);
    *field = real;
}

static bool valid_name(const char *s, bool upper_and_dot)
{
    if (!s[0])
        return false;
    for (const char *p = s; *p; p++) {
        bool ok = (*p >= 'a' && *p <= 'z') || (*p >= '0' && *p <= '9') || *p == '_' || *p == '-';
        if (upper_and_dot)
            ok = ok || (*p >= 'A' && *p <= 'Z') || *p == '.';
        if (!ok)
            return false;
    }
    return true;
}

static void validate_stage(struct loader *ld, struct r1_recipe *r, int i)
{
    struct r1_stage_cfg *s = &r->stages[i];
    const struct node *sn = ld->stage_nodes[i];
    if (sn->kind != NODE_MAP || s->kind == R1_STAGE_N_KINDS || !s->name)
        return;
    if (s->steps > 0 && s->epochs > 0)
        r1_recipe_problem(ld, AT(node_at(sn, sn, "epochs", NULL)),
                          "give steps or epochs, not both");
    else if (s->steps == 0 && s->epochs == 0 && !r1_recipe_map_get(sn, "steps") &&
             !r1_recipe_map_get(sn, "epochs"))
        r1_recipe_problem(ld, AT(sn), "stage '%s' needs steps or epochs", s->name);
    /* grpo and align update on P·G/minibatches completions, not batch_size: their own
     * check (stages/grpo.c) holds micro_batch_size against that */
    bool rl = s->kind == R1_STAGE_GRPO || s->kind == R1_STAGE_ALIGN;
    if (s->micro_batch_size == 0)
        s->micro_batch_size = s->batch_size;
    else if (!rl && s->batch_size % s->micro_batch_size != 0)
        r1_recipe_problem(ld, AT(node_at(sn, sn, "micro_batch_size", NULL)),
                          "batch_size %lld does not divide by micro_batch_size %lld",
                          (long long)s->batch_size, (long long)s->micro_batch_size);
    if (s->optim.min_lr > s->optim.lr)
        r1_recipe_problem(ld, AT(node_at(sn, sn, "optimizer", "min_lr", NULL)),
                          "optimizer.min_lr %g is above optimizer.lr %g", (double)s->optim.min_lr,
                          (double)s->optim.lr);
    if (s->optim.schedule != R1_LR_CONSTANT && s->steps > 0 &&
        s->optim.warmup_steps >= s->steps)
        r1_recipe_problem(ld, AT(node_at(sn, sn, "optimizer", "warmup_steps", NULL)),
                          "optimizer.warmup_steps %lld leaves no steps to decay over (steps %lld)",
                          (long long)s->optim.warmup_steps, (long long)s->steps);

    /* init: default to the previous stage, or model.init for the first; rejection_sft
     * fine-tunes the base model (model.init, or the last pretrain stage before it when
     * model.init is a fresh scratch model), as the paper did */
    const struct node *in = node_at(sn, sn, "init", NULL);
    int base = -1;
    if (s->kind == R1_STAGE_REJECTION_SFT && r->model_init.kind == R1_SOURCE_SCRATCH)
        for (int j = 0; j < i; j++)
            if (r->stages[j].kind == R1_STAGE_PRETRAIN)
                base = j;
    if (!s->init.spec && base >= 0) {
        s->init.spec = r1_recipe_xstrdup(ld, r->stages[base].name);
        s->init.kind = R1_SOURCE_STAGE;
        s->init.stage = base;
    } else if (!s->init.spec) {
        if (i == 0 || s->kind == R1_STAGE_REJECTION_SFT) {
            /* a missing model.init is already a problem; leave the stage's init empty */
            s->init.spec = r->model_init.spec ? r1_recipe_xstrdup(ld, r->model_init.spec) : NULL;
            s->init.kind = r->model_init.kind;
            s->init.stage = -1;
            if (r->model_init.preset)
                s->init.preset = r1_recipe_xstrdup(ld, r->model_init.preset);
        } else {
            /* a reward model is not a policy: stages after one continue from the stage
             * before it (a reward_model stage itself starts from the previous stage) */
            int j = i - 1;
            while (s->kind != R1_STAGE_REWARD_MODEL && j > 0 &&
                   r->stages[j].kind == R1_STAGE_REWARD_MODEL)
                j--;
            s->init.spec = r1_recipe_xstrdup(ld, r->stages[j].name);
            s->init.kind = R1_SOURCE_STAGE;
            s->init.stage = j;
        }
    } else {
        resolve_source(ld, r, &s->init, in, i);
    }

    /* data: exactly one source */
    const struct node *dn = node_at(sn, sn, "data", NULL);
    int sources = (s->data.path != NULL) + (s->data.stage != NULL) + (s->data.generator != NULL);
    s->data.stage_index = -1;
    if (dn != sn && sources != 1)
        r1_recipe_problem(ld, AT(dn), "data needs exactly one of path, stage, generator (found %d)",
                          sources);
    if (s->data.path)
        resolve_file(ld, &s->data.path, node_at(dn, dn, "path", NULL), "data.path");
    if (s->data.eval_path)
        resolve_file(ld, &s->data.eval_path, node_at(dn, dn, "eval_path", NULL),
                     "data.eval_path");
    if (s->data.stage) {
        const struct node *at = node_at(dn, dn, "stage", NULL);
        int j = stage_index(r, s->data.stage);
        if (j < 0) {
            char earlier[256];
            list_earlier(r, i, earlier, sizeof(earlier));
            r1_recipe_problem(ld, AT(at), "data.stage '%s' is not a stage (earlier stages: %s)",
                              s->data.stage, earlier);
        } else if (j >= i) {
            bad_stage_ref(ld, at, "data.stage", r, i, j);
        } else {
            s->data.stage_index = j;
        }
    }

    if (s->kind == R1_STAGE_GRPO || s->kind == R1_STAGE_ALIGN) {
        const struct r1_grpo_cfg *g = &s->grpo;
        int64_t batch = g->prompts_per_step * g->group_size;
        if (batch % g->minibatches != 0)
            r1_recipe_problem(
                ld, AT(sn),
                "batch prompts_per_step*group_size = %lld*%lld = %lld does not divide "
                "into grpo.minibatches = %lld",
                (long long)g->prompts_per_step, (long long)g->group_size, (long long)batch,
                (long long)g->minibatches);
    }
    if (s->kind == R1_STAGE_REJECTION_SFT) {
        struct r1_model_source *src = &s->rejection.source;
        const struct node *at = node_at(sn, sn, "rejection", "source", NULL);
        if (src->spec) {
            resolve_source_as(ld, r, src, at, i, "rejection.source");
        } else if (i == 0) {
            r1_recipe_problem(ld, AT(sn), "stage '%s' is the first stage: set rejection.source "
                              "to the model that samples (scratch:<preset> or a model dir)",
                              s->name);
            src->stage = -1;
        } else {
            int j = i - 1;
            while (j > 0 && r->stages[j].kind == R1_STAGE_REWARD_MODEL)
                j--;
            src->spec = r1_recipe_xstrdup(ld, r->stages[j].name);
            src->kind = R1_SOURCE_STAGE;
            src->stage = j;
        }
        if (s->rejection.mix_path)
            resolve_file(ld, &s->rejection.mix_path, node_at(sn, sn, "rejection", "mix_path", NULL),
                         "rejection.mix_path");
        if (s->rejection.mix_ratio > 0 && !s->rejection.mix_path)
            r1_recipe_problem(ld, AT(node_at(sn, sn, "rejection", "mix_ratio", NULL)),
                              "rejection.mix_ratio %g needs rejection.mix_path",
                              (double)s->rejection.mix_ratio);
    } else {
        s->rejection.source.stage = -1;
    }
    if (s->kind == R1_STAGE_ALIGN) {
        struct r1_model_source *src = &s->align.reward_model;
        const struct node *at = node_at(sn, sn, "align", "reward_model", NULL);
        if (src->spec) {
            resolve_source_as(ld, r, src, at, i, "align.reward_model");
            if (src->kind == R1_SOURCE_STAGE && src->stage >= 0 &&
                r->stages[src->stage].kind != R1_STAGE_REWARD_MODEL)
                r1_recipe_problem(ld, AT(at), "align.reward_model '%s' is a %s stage, not a "
                                  "reward_model stage", src->spec,
                                  r1_stage_kind_name(r->stages[src->stage].kind));
            else if (src->kind == R1_SOURCE_STAGE && src->stage >= 0 &&
                     r->stages[src->stage].reward_model.mode == R1_RM_POINTWISE)
                r1_recipe_problem(ld, AT(at), "align.reward_model '%s' is a pointwise (safety) "
                                  "reward model; name it in align.safety_model", src->spec);
            else if (src->kind == R1_SOURCE_SCRATCH || src->kind == R1_SOURCE_GGUF)
                r1_recipe_problem(ld, AT(at), "align.reward_model '%s' must be a reward_model "
                                  "stage or a directory saved by one", src->spec);
        } else {
            int j = -1; /* the latest preference (pairwise) reward model */
            for (int k = 0; k < i; k++)
                if (r->stages[k].kind == R1_STAGE_REWARD_MODEL &&
                    r->stages[k].reward_model.mode == R1_RM_PAIRWISE)
                    j = k;
            src->stage = j;
            if (j >= 0) {
                src->spec = r1_recipe_xstrdup(ld, r->stages[j].name);
                src->kind = R1_SOURCE_STAGE;
            }
            /* without a reward model the stage has rule rewards only: fine unless it has
             * general prompts, which only a reward model can score */
            if (j < 0 && (s->align.general_path || s->align.general_generator))
                r1_recipe_problem(ld, AT(sn), "stage '%s' has general prompts but no reward "
                                  "model: add a reward_model stage before it or set "
                                  "align.reward_model", s->name);
        }
        struct r1_model_source *saf = &s->align.safety_model;
        const struct node *sat = node_at(sn, sn, "align", "safety_model", NULL);
        if (saf->spec) {
            resolve_source_as(ld, r, saf, sat, i, "align.safety_model");
            if (saf->kind == R1_SOURCE_STAGE && saf->stage >= 0 &&
                (r->stages[saf->stage].kind != R1_STAGE_REWARD_MODEL ||
                 r->stages[saf->stage].reward_model.mode != R1_RM_POINTWISE))
                r1_recipe_problem(ld, AT(sat), "align.safety_model '%s' must be a reward_model "
                                  "stage with reward_model.mode pointwise", saf->spec);
            else if (saf->kind == R1_SOURCE_SCRATCH || saf->kind == R1_SOURCE_GGUF)
                r1_recipe_problem(ld, AT(sat), "align.safety_model '%s' must be a pointwise "
                                  "reward_model stage or a directory saved by one", saf->spec);
        } else {
            saf->stage = -1;
        }
        if (s->align.general_path && s->align.general_generator)
            r1_recipe_problem(ld, AT(node_at(sn, sn, "align", NULL)),
                              "align: give general_path or general_generator, not both");
        if (s->align.general_path)
            resolve_file(ld, &s->align.general_path,
                         node_at(sn, sn, "align", "general_path", NULL), "align.general_path");
    } else {
        s->align.reward_model.stage = -1;
        s->align.safety_model.stage = -1;
    }
    /* judge rewards: their models resolve like any source, before any work starts */
    for (int list = 0; list < 2; list++) {
        bool grpo = list == 0;
        if (grpo ? !(s->kind == R1_STAGE_GRPO || s->kind == R1_STAGE_ALIGN)
                 : s->kind != R1_STAGE_REJECTION_SFT)
            continue;
        struct r1_reward_cfg *rw = grpo ? s->grpo.rewards : s->rejection.rewards;
        int n = grpo ? s->grpo.n_rewards : s->rejection.n_rewards;
        const struct node *ln = node_at(sn, sn, grpo ? "grpo" : "rejection", "rewards", NULL);
        for (int k = 0; k < n; k++) {
            const struct node *at = ln->kind == NODE_SEQ && k < ln->n ? ln->vals[k] : ln;
            at = node_at(at, at, "judge", NULL);
            const char *key = grpo ? "grpo.rewards" : "rejection.rewards";
            rw[k].judge.stage = -1;
            if (!rw[k].name || strcmp(rw[k].name, "judge") != 0) {
                if (rw[k].judge.spec)
                    r1_recipe_problem(ld, AT(at), "%s[%d].judge is set but the reward is '%s'; "
                                      "only the judge reward reads a judge model", key, k,
                                      rw[k].name ? rw[k].name : "");
                continue;
            }
            if (!rw[k].judge.spec) {
                r1_recipe_problem(ld, AT(at), "%s[%d]: the judge reward needs judge: an earlier "
                                  "stage, a Hugging Face dir or a .gguf file", key, k);
                continue;
            }
            char what[64];
            snprintf(what, sizeof(what), "%s[%d].judge", key, k);
            resolve_source_as(ld, r, &rw[k].judge, at, i, what);
            if (rw[k].judge.kind == R1_SOURCE_SCRATCH)
                r1_recipe_problem(ld, AT(at), "%s '%s': a judge must be a trained model, not "
                                  "a fresh one", what, rw[k].judge.spec);
            else if (rw[k].judge.kind == R1_SOURCE_STAGE && rw[k].judge.stage >= 0 &&
                     r->stages[rw[k].judge.stage].kind == R1_STAGE_REWARD_MODEL)
                r1_recipe_problem(ld, AT(at), "%s '%s' is a reward model; a judge is a causal "
                                  "LM (an sft stage, for one)", what, rw[k].judge.spec);
        }
    }
    if (s->kind == R1_STAGE_REJECTION_SFT &&
        s->rejection.keep_per_prompt > s->rejection.samples_per_prompt)
        r1_recipe_problem(ld, AT(node_at(sn, sn, "rejection", "keep_per_prompt", NULL)),
                          "rejection.keep_per_prompt %lld is more than samples_per_prompt %lld",
                          (long long)s->rejection.keep_per_prompt,
                          (long long)s->rejection.samples_per_prompt);
}

static void validate(struct loader *ld, struct r1_recipe *r, const struct node *root)
{
    if (r->name && !valid_name(r->name, true))
        r1_recipe_problem(ld, AT(node_at(root, root, "name", NULL)),
                          "name '%s' may hold only letters, digits, '.', '_' and '-'", r->name);
    if (r->model_init.spec)
        resolve_source(ld, r, &r->model_init, node_at(root, root, "model", "init", NULL), -1);
    if (r->tokenizer && strcmp(r->tokenizer, "bytes") != 0) {
        const struct node *at = node_at(root, root, "model", "tokenizer", NULL);
        char *real = resolve_path(ld, at, r->tokenizer);
        if (!real)
            r1_recipe_problem(ld, AT(at),
                              "tokenizer '%s' is neither \"bytes\" nor an existing path",
                              r->tokenizer);
        else {
            free(r->tokenizer);
            r->tokenizer = real;
        }
    }
    if (!ld->stage_nodes)
        return;
    for (int i = 0; i < r->n_stages; i++) {
        const struct r1_stage_cfg *s = &r->stages[i];
        const struct node *at = node_at(ld->stage_nodes[i], ld->stage_nodes[i], "name", NULL);
        if (!s->name)
            continue;
        if (!valid_name(s->name, false))
            r1_recipe_problem(ld, AT(at), "stage name '%s' may hold only a-z, 0-9, '_' and '-'",
                              s->name);
        int j = stage_index(r, s->name);
        if (j < i) {
            const struct node *first = node_at(ld->stage_nodes[j], ld->stage_nodes[j], "name",
                                               NULL);
            r1_recipe_problem(ld, AT(at), "duplicate stage name '%s' (first used at %d:%d)",
                              s->name, first->line, first->col);
        }
    }
    for (int i = 0; i < r->n_stages; i++)
        validate_stage(ld, r, i);
}

/* ---- the public API ---- */

static int cmp_problem(const void *a, const void *b)
{
    const struct problem *x = a, *y = b;
    if (x->src != y->src)
        return x->src < y->src ? -1 : 1;
    if (x->line != y->line)
        return x->line < y->line ? -1 : 1;
    if (x->col != y->col)
        return x->col < y->col ? -1 : 1;
    return x->seq < y->seq ? -1 : x->seq > y->seq;
}

static void diag_push(struct r1_recipe_diag *d, char *msg, bool *oom)
{
    if (d->n == d->cap) {
        int nc = d->cap ? d->cap * 2 : 8;
        char **m = realloc(d->msgs, (size_t)nc * sizeof(*m));
        if (!m) {
            free(msg);
            *oom = true;
            return;
        }
        d->msgs = m;
        d->cap = nc;
    }
    d->msgs[d->n++] = msg;
}

void r1_recipe_diag_release(struct r1_recipe_diag *d)
{
    if (!d)
        return;
    for (int i = 0; i < d->n; i++)
        free(d->msgs[i]);
    free(d->msgs);
    memset(d, 0, sizeof(*d));
}

static void free_section(const char *section, char *base)
{
    int n;
    const struct r1_recipe_key *t = r1_recipe_schema(&n);
    for (int i = 0; i < n; i++) {
        const struct r1_recipe_key *k = &t[i];
        if (strcmp(k->section, section) != 0)
            continue;
        if (k->type == R1_KEY_STRING) {
            char *s;
            memcpy(&s, base + k->offset, sizeof(s));
            free(s);
        } else if (k->type == R1_KEY_MAP) {
            free_section(k->choices, base);
        } else if (k->type == R1_KEY_LIST) {
            char *items;
            int count;
            memcpy(&items, base + k->offset, sizeof(items));
            memcpy(&count, base + k->count_offset, sizeof(count));
            for (int j = 0; items && j < count; j++)
                free_section(k->choices, items + (size_t)j * k->item_size);
            free(items);
        }
    }
}

void r1_recipe_free(struct r1_recipe *r)
{
    if (!r)
        return;
    for (int i = 0; r->stages && i < r->n_stages; i++) {
        free(r->stages[i].init.preset);
        free(r->stages[i].rejection.source.preset);
        free(r->stages[i].align.reward_model.preset);
        free(r->stages[i].align.safety_model.preset);
        for (int k = 0; r->stages[i].grpo.rewards && k < r->stages[i].grpo.n_rewards; k++)
            free(r->stages[i].grpo.rewards[k].judge.preset);
        for (int k = 0; r->stages[i].rejection.rewards && k < r->stages[i].rejection.n_rewards;
             k++)
            free(r->stages[i].rejection.rewards[k].judge.preset);
    }
    free(r->model_init.preset);
    free_section("", (char *)r);
    free(r->path);
    free(r);
}

static void loader_release(struct loader *ld)
{
    for (int i = 0; i < ld->n_nodes; i++) {
        free(ld->nodes[i]->text);
        free(ld->nodes[i]->keys);
        free(ld->nodes[i]->vals);
        free(ld->nodes[i]);
    }
    free(ld->nodes);
    for (int i = 0; i < ld->n_files; i++)
        free(ld->files[i].name);
    free(ld->files);
    for (int i = 0; i < ld->n_probs; i++)
        free(ld->probs[i].msg);
    free(ld->probs);
    free(ld->extends);
}

int r1_recipe_load(struct r1_recipe **out, const char *path, const char *const *sets, int n_sets,
                   struct r1_recipe_diag *diag)
{
    *out = NULL;
    struct loader ld = {0};
    struct r1_recipe *r = calloc(1, sizeof(*r));
    if (!r)
        return r1_err_set(R1_ENOMEM, "%s: out of memory", path);
    r->path = r1_recipe_xstrdup(&ld, path);
    fill_defaults(&ld, "", (char *)r);
    r->model_init.stage = -1;
    struct node *root = r1_recipe_load_tree(&ld, path, NULL);
    for (int i = 0; root && i < n_sets; i++)
        r1_recipe_apply_set(&ld, root, sets[i]);
    if (root) {
        apply_map(&ld, "", (char *)r, root, -1);
        validate(&ld, r, root);
        if (ld.extends)
            r->extends = r1_recipe_xstrdup(&ld, ld.extends);
    }
    int rc = 0;
    if (ld.oom) {
        rc = r1_err_set(R1_ENOMEM, "%s: out of memory while loading the recipe", path);
    } else if (ld.n_probs > 0) {
        qsort(ld.probs, (size_t)ld.n_probs, sizeof(*ld.probs), cmp_problem);
        for (int i = 0; diag && i < ld.n_probs; i++) {
            const struct problem *p = &ld.probs[i];
            char *m = NULL;
            int len = p->line > 0 ? asprintf(&m, "%s:%d:%d: %s", ld.files[p->src].name, p->line,
                                             p->col, p->msg)
                                  : asprintf(&m, "%s: %s", ld.files[p->src].name, p->msg);
            if (len < 0) {
                ld.oom = true;
                break;
            }
            diag_push(diag, m, &ld.oom);
        }
        rc = r1_err_set(R1_EINVAL, "%s: %d problem%s in the recipe", path, ld.n_probs,
                        ld.n_probs == 1 ? "" : "s");
    }
    loader_release(&ld);
    if (rc) {
        r1_recipe_free(r);
        return rc;
    }
    *out = r;
    return 0;
}
