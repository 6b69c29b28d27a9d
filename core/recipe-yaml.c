/* recipe-yaml.c - the first half of recipe loading: YAML (libyaml) into a
 * position-keeping tree of struct node, `extends` merging (child keys override the
 * parent's, maps merge key by key, stages merge by name) and `--set KEY=VALUE`
 * overrides.  recipe.c turns the merged tree into struct r1_recipe.  Problems are
 * collected in the loader with the file and line:col they come from. */
#include "core/recipe.h"

#include <errno.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>

#include <yaml.h>

#include "core/recipe-internal.h"

#define MAX_DEPTH 64

/* ---- small helpers ---- */

static void *grow(struct loader *ld, void *p, int *cap, int need, size_t size)
{
    if (need <= *cap)
        return p;
    int nc = *cap ? *cap * 2 : 8;
    while (nc < need)
        nc *= 2;
    void *q = realloc(p, (size_t)nc * size);
    if (!q) {
        ld->oom = true;
        return NULL;
    }
    *cap = nc;
    return q;
}

char *r1_recipe_xstrdup(struct loader *ld, const char *s)
{
    char *d = strdup(s);
    if (!d)
        ld->oom = true;
    return d;
}

void r1_recipe_problem(struct loader *ld, int src, int line, int col, const char *fmt, ...)
{
    struct problem *p = grow(ld, ld->probs, &ld->cap_probs, ld->n_probs + 1, sizeof(*p));
    if (!p)
        return;
    ld->probs = p;
    char buf[1024];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(buf, sizeof(buf), fmt, ap);
    va_end(ap);
    p[ld->n_probs] = (struct problem){src, line, col, ld->n_probs, r1_recipe_xstrdup(ld, buf)};
    ld->n_probs++;
}

static int add_file(struct loader *ld, const char *name, bool is_set)
{
    struct source_file *f = grow(ld, ld->files, &ld->cap_files, ld->n_files + 1, sizeof(*f));
    if (!f)
        return 0;
    ld->files = f;
    f[ld->n_files] = (struct source_file){r1_recipe_xstrdup(ld, name), is_set};
    return ld->n_files++;
}

static struct node *new_node(struct loader *ld, enum node_kind kind, int src, int line, int col)
{
    struct node **v = grow(ld, ld->nodes, &ld->cap_nodes, ld->n_nodes + 1, sizeof(*v));
    struct node *n = calloc(1, sizeof(*n));
    if (!v || !n) {
        ld->oom = true;
        free(n);
        return NULL;
    }
    ld->nodes = v;
    v[ld->n_nodes++] = n;
    n->kind = kind;
    n->src = src;
    n->line = line;
    n->col = col;
    return n;
}

static void node_push(struct loader *ld, struct node *n, struct node *key, struct node *val)
{
    int cap = n->cap;
    struct node **k = n->keys, **v = n->vals;
    if (n->n + 1 > cap) {
        int c2 = cap;
        k = grow(ld, n->keys, &cap, n->n + 1, sizeof(*k));
        if (!k)
            return;
        n->keys = k;
        v = grow(ld, n->vals, &c2, n->n + 1, sizeof(*v));
        if (!v)
            return;
        n->vals = v;
        n->cap = cap;
    }
    k[n->n] = key;
    v[n->n] = val;
    n->n++;
}

static int map_index(const struct node *m, const char *key)
{
    if (!m || m->kind != NODE_MAP)
        return -1;
    for (int i = 0; i < m->n; i++)
        if (strcmp(m->keys[i]->text, key) == 0)
            return i;
    return -1;
}

struct node *r1_recipe_map_get(const struct node *m, const char *key)
{
    int i = map_index(m, key);
    return i < 0 ? NULL : m->vals[i];
}

bool r1_recipe_node_is_null(const struct node *n)
{
    return n->kind == NODE_SCALAR && n->plain &&
           (!n->text[0] || strcmp(n->text, "~") == 0 || strcmp(n->text, "null") == 0);
}

const char *r1_recipe_node_kind_name(const struct node *n)
{
    return n->kind == NODE_MAP ? "a map" : n->kind == NODE_SEQ ? "a list" : "a single value";
}

/* The stage's name, when it has a plain one. */
static const char *stage_name_of(const struct node *stage)
{
    const struct node *n = r1_recipe_map_get(stage, "name");
    return n && n->kind == NODE_SCALAR ? n->text : NULL;
}

/* ---- YAML into the tree ---- */

static struct node *convert(struct loader *ld, yaml_document_t *doc, yaml_node_t *yn, int src,
                            int depth)
{
    if (!yn)
        return NULL;
    int line = (int)yn->start_mark.line + 1, col = (int)yn->start_mark.column + 1;
    if (depth > MAX_DEPTH) {
        r1_recipe_problem(ld, src, line, col, "nesting deeper than %d levels (a recursive alias?)",
                          MAX_DEPTH);
        return NULL;
    }
    struct node *n;
    switch (yn->type) {
    case YAML_SCALAR_NODE:
        if (!(n = new_node(ld, NODE_SCALAR, src, line, col)))
            return NULL;
        n->text = strndup((const char *)yn->data.scalar.value, yn->data.scalar.length);
        if (!n->text)
            ld->oom = true;
        n->plain = yn->data.scalar.style == YAML_PLAIN_SCALAR_STYLE;
        return n->text ? n : NULL;
    case YAML_SEQUENCE_NODE:
        if (!(n = new_node(ld, NODE_SEQ, src, line, col)))
            return NULL;
        for (yaml_node_item_t *it = yn->data.sequence.items.start;
             it < yn->data.sequence.items.top; it++) {
            struct node *v = convert(ld, doc, yaml_document_get_node(doc, *it), src, depth + 1);
            if (v)
                node_push(ld, n, NULL, v);
        }
        return n;
    case YAML_MAPPING_NODE:
        if (!(n = new_node(ld, NODE_MAP, src, line, col)))
            return NULL;
        for (yaml_node_pair_t *p = yn->data.mapping.pairs.start; p < yn->data.mapping.pairs.top;
             p++) {
            struct node *k = convert(ld, doc, yaml_document_get_node(doc, p->key), src, depth + 1);
            struct node *v =
                convert(ld, doc, yaml_document_get_node(doc, p->value), src, depth + 1);
            if (!k || !v)
                continue;
            if (k->kind != NODE_SCALAR) {
                r1_recipe_problem(ld, AT(k), "a key must be a name, not %s",
                                  r1_recipe_node_kind_name(k));
                continue;
            }
            int prev = map_index(n, k->text);
            if (prev >= 0) {
                r1_recipe_problem(ld, AT(k), "duplicate key '%s' (first given at %d:%d)", k->text,
                                  n->keys[prev]->line, n->keys[prev]->col);
                continue;
            }
            node_push(ld, n, k, v);
        }
        return n;
    default:
        return NULL;
    }
}

/* Parses one YAML document from a file (f) or a string (text); NULL after a problem. */
static struct node *parse_yaml(struct loader *ld, FILE *f, const char *text, int src)
{
    yaml_parser_t parser;
    yaml_document_t doc;
    if (!yaml_parser_initialize(&parser)) {
        ld->oom = true;
        return NULL;
    }
    if (f)
        yaml_parser_set_input_file(&parser, f);
    else
        yaml_parser_set_input_string(&parser, (const unsigned char *)text, strlen(text));
    struct node *root = NULL;
    if (!yaml_parser_load(&parser, &doc)) {
        if (f) {
            const char *ctx = parser.context ? parser.context : "";
            r1_recipe_problem(ld, src, (int)parser.problem_mark.line + 1,
                              (int)parser.problem_mark.column + 1, "YAML syntax error: %s%s%s",
                              parser.problem ? parser.problem : "malformed document",
                              ctx[0] ? " " : "", ctx);
        }
        yaml_parser_delete(&parser);
        return NULL;
    }
    yaml_node_t *top = yaml_document_get_root_node(&doc);
    if (top)
        root = convert(ld, &doc, top, src, 0);
    else if (f)
        r1_recipe_problem(ld, src, 1, 1, "the recipe is empty");
    yaml_document_delete(&doc);
    yaml_parser_delete(&parser);
    return root;
}

/* dir(base) + "/" + rel, or rel when it is absolute or base has no directory. */
/* "$R1_CACHE/…" (the model cache: $R1_CACHE, else ~/.cache/r1) and "~/…" ($HOME) as
 * absolute paths, malloc'd; NULL for any other path. */
static char *expand_path(struct loader *ld, const char *rel)
{
    const char *cache = getenv("R1_CACHE"), *home = getenv("HOME");
    const char *head = NULL, *head2 = "", *tail = NULL;
    if (strncmp(rel, "$R1_CACHE/", 10) == 0 || strcmp(rel, "$R1_CACHE") == 0) {
        tail = rel + 9;
        if (cache && cache[0])
            head = cache;
        else
            head = home ? home : "", head2 = "/.cache/r1";
    } else if (strncmp(rel, "~/", 2) == 0) {
        head = home ? home : "";
        tail = rel + 1;
    }
    if (!head)
        return NULL;
    size_t n = strlen(head) + strlen(head2) + strlen(tail) + 1;
    char *p = malloc(n);
    if (!p) {
        ld->oom = true;
        return NULL;
    }
    snprintf(p, n, "%s%s%s", head, head2, tail);
    return p;
}

char *r1_recipe_join_path(struct loader *ld, const char *base, const char *rel)
{
    const char *slash = base ? strrchr(base, '/') : NULL;
    if (strncmp(rel, "$R1_CACHE/", 10) == 0 || strcmp(rel, "$R1_CACHE") == 0 ||
        strncmp(rel, "~/", 2) == 0)
        return expand_path(ld, rel);
    if (rel[0] == '/' || !slash)
        return r1_recipe_xstrdup(ld, rel);
    size_t dl = (size_t)(slash - base);
    char *p = malloc(dl + strlen(rel) + 2);
    if (!p) {
        ld->oom = true;
        return NULL;
    }
    memcpy(p, base, dl);
    p[dl] = '/';
    strcpy(p + dl + 1, rel);
    return p;
}

/* ---- extends ---- */

static void merge(struct loader *ld, struct node *parent, const struct node *child, bool top);

static void merge_stages(struct loader *ld, struct node *parent, const struct node *child)
{
    for (int i = 0; i < child->n; i++) {
        struct node *cs = child->vals[i];
        const char *name = stage_name_of(cs);
        struct node *ps = NULL;
        for (int j = 0; name && j < parent->n; j++) {
            const char *pn = stage_name_of(parent->vals[j]);
            if (pn && strcmp(pn, name) == 0 && parent->vals[j]->kind == NODE_MAP &&
                cs->kind == NODE_MAP)
                ps = parent->vals[j];
        }
        if (ps)
            merge(ld, ps, cs, false);
        else
            node_push(ld, parent, NULL, cs);
    }
}

/* Child keys override parent keys; maps merge key by key; stages merge by name. */
static void merge(struct loader *ld, struct node *parent, const struct node *child, bool top)
{
    for (int i = 0; i < child->n; i++) {
        struct node *key = child->keys[i], *cv = child->vals[i];
        int pi = map_index(parent, key->text);
        if (pi < 0) {
            node_push(ld, parent, key, cv);
            continue;
        }
        struct node *pv = parent->vals[pi];
        if (top && strcmp(key->text, "stages") == 0 && pv->kind == NODE_SEQ &&
            cv->kind == NODE_SEQ)
            merge_stages(ld, pv, cv);
        else if (pv->kind == NODE_MAP && cv->kind == NODE_MAP)
            merge(ld, pv, cv, false);
        else {
            parent->keys[pi] = key;
            parent->vals[pi] = cv;
        }
    }
}

struct node *r1_recipe_load_tree(struct loader *ld, const char *path, const struct node *via)
{
    char *real = realpath(path, NULL);
    if (!real) {
        if (via)
            r1_recipe_problem(ld, AT(via), "extends: cannot read '%s' (%s)", path, strerror(errno));
        else
            r1_recipe_problem(ld, add_file(ld, path, false), 0, 0, "cannot read the recipe (%s)",
                              strerror(errno));
        return NULL;
    }
    for (int i = 0; i < ld->depth; i++) {
        if (strcmp(ld->chain[i], real) == 0) {
            r1_recipe_problem(ld, AT(via), "extends cycle: '%s' is already being extended", path);
            free(real);
            return NULL;
        }
    }
    if (ld->depth == R1_RECIPE_MAX_EXTENDS) {
        r1_recipe_problem(ld, AT(via), "extends nests deeper than %d files", R1_RECIPE_MAX_EXTENDS);
        free(real);
        return NULL;
    }
    int src = add_file(ld, path, false);
    FILE *f = fopen(path, "rb");
    if (!f) {
        r1_recipe_problem(ld, src, 0, 0, "cannot read the recipe (%s)", strerror(errno));
        free(real);
        return NULL;
    }
    ld->chain[ld->depth++] = real;
    struct node *root = parse_yaml(ld, f, NULL, src);
    fclose(f);
    if (root && root->kind != NODE_MAP) {
        r1_recipe_problem(ld, AT(root),
                          "a recipe is a map of keys (name, model, stages, ...), not %s",
                          r1_recipe_node_kind_name(root));
        root = NULL;
    }
    int ei = root ? map_index(root, "extends") : -1;
    if (ei >= 0) {
        struct node *ext = root->vals[ei];
        root->keys[ei] = root->keys[root->n - 1];
        root->vals[ei] = root->vals[root->n - 1];
        root->n--;
        if (ext->kind != NODE_SCALAR || r1_recipe_node_is_null(ext)) {
            r1_recipe_problem(ld, AT(ext), "'extends' must be the path of a parent recipe");
        } else {
            char *ppath = r1_recipe_join_path(ld, path, ext->text);
            struct node *parent = ppath ? r1_recipe_load_tree(ld, ppath, ext) : NULL;
            if (ppath && ld->depth == 1 && !ld->extends)
                ld->extends = realpath(ppath, NULL);
            free(ppath);
            if (parent) {
                merge(ld, parent, root, true);
                root = parent;
            }
        }
    }
    ld->depth--;
    free(ld->chain[ld->depth]);
    return root;
}

/* ---- --set ---- */

static void set_origin(struct node *n, int src)
{
    n->src = src;
    n->line = n->col = 0;
    for (int i = 0; i < n->n; i++) {
        if (n->keys && n->keys[i])
            set_origin(n->keys[i], src);
        set_origin(n->vals[i], src);
    }
}

void r1_recipe_apply_set(struct loader *ld, struct node *root, const char *arg)
{
    const char *eq = strchr(arg, '=');
    size_t kl = eq ? (size_t)(eq - arg) : strlen(arg);
    char label[320];
    snprintf(label, sizeof(label), "--set %.*s", (int)(kl < 300 ? kl : 300), arg);
    int src = add_file(ld, label, true);
    if (!eq || kl == 0) {
        r1_recipe_problem(ld, src, 0, 0, "expected KEY=VALUE (e.g. --set stages.sft.steps=50)");
        return;
    }
    struct node *val = parse_yaml(ld, NULL, eq + 1, src);
    if (!val) {
        if (!(val = new_node(ld, NODE_SCALAR, src, 0, 0)) ||
            !(val->text = r1_recipe_xstrdup(ld, eq + 1)))
            return;
        val->plain = true;
    }
    set_origin(val, src);
    char *path = strndup(arg, kl);
    if (!path) {
        ld->oom = true;
        return;
    }
    char *comps[32];
    int nc = 0;
    for (char *p = path; nc < 32;) {
        comps[nc++] = p;
        p = strchr(p, '.');
        if (!p)
            break;
        *p++ = '\0';
    }
    struct node *cur = root;
    for (int c = 0; c < nc; c++) {
        const char *comp = comps[c];
        if (!comp[0]) {
            r1_recipe_problem(ld, src, 0, 0, "empty key in the path '%s'", label + 6);
            break;
        }
        if (c == 0 && strcmp(comp, "stages") == 0 && nc > 1) {
            struct node *stages = r1_recipe_map_get(root, "stages"), *found = NULL;
            char names[256] = "";
            for (int i = 0; stages && stages->kind == NODE_SEQ && i < stages->n; i++) {
                const char *sn = stage_name_of(stages->vals[i]);
                if (!sn)
                    continue;
                if (strcmp(sn, comps[1]) == 0 && stages->vals[i]->kind == NODE_MAP)
                    found = stages->vals[i];
                size_t l = strlen(names);
                snprintf(names + l, sizeof(names) - l, "%s%s", l ? ", " : "", sn);
            }
            if (!found) {
                r1_recipe_problem(ld, src, 0, 0, "no stage named '%s' (the stages are: %s)",
                                  comps[1], names[0] ? names : "none");
                break;
            }
            if (nc == 2) {
                r1_recipe_problem(ld, src, 0, 0,
                                  "name a key of stage '%s' (e.g. stages.%s.steps=50)", comps[1],
                                  comps[1]);
                break;
            }
            cur = found;
            c++;
            continue;
        }
        struct node *key = new_node(ld, NODE_SCALAR, src, 0, 0);
        if (!key || !(key->text = r1_recipe_xstrdup(ld, comp)))
            break;
        key->plain = true;
        int i = map_index(cur, comp);
        if (c == nc - 1) {
            if (i >= 0)
                cur->vals[i] = val;
            else
                node_push(ld, cur, key, val);
            break;
        }
        if (i < 0) {
            struct node *m = new_node(ld, NODE_MAP, src, 0, 0);
            if (!m)
                break;
            node_push(ld, cur, key, m);
            cur = m;
        } else if (cur->vals[i]->kind != NODE_MAP) {
            r1_recipe_problem(ld, src, 0, 0, "'%s' is %s, not a map of keys", comp,
                              r1_recipe_node_kind_name(cur->vals[i]));
            break;
        } else {
            cur = cur->vals[i];
        }
    }
    free(path);
}
