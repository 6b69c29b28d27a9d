/* recipe-internal.h - what recipe.c (schema-driven conversion, validation, the public
 * API) shares with recipe-yaml.c (YAML into a tree, `extends`, `--set`); not a public
 * header.
 *
 * The loader owns every node and string it hands out (freed by recipe.c when loading
 * ends); a helper that runs out of memory sets loader.oom and returns NULL. */
#ifndef R1_RECIPE_INTERNAL_H
#define R1_RECIPE_INTERNAL_H

#include <stdbool.h>

#define R1_RECIPE_MAX_EXTENDS 16

enum node_kind { NODE_SCALAR, NODE_MAP, NODE_SEQ };

struct node {
    enum node_kind kind;
    int src;         /* index into loader.files */
    int line, col;   /* 1-based; 0 for values given with --set */
    char *text;      /* scalar */
    bool plain;      /* scalar written without quotes */
    struct node **keys, **vals; /* map: keys[i] -> vals[i]; sequence: vals */
    int n, cap;
};

struct source_file {
    char *name;  /* as shown in messages: a path, or "--set KEY" */
    bool is_set; /* relative paths resolve against the working directory */
};

struct problem {
    int src, line, col, seq;
    char *msg;
};

struct loader {
    struct node **nodes;
    int n_nodes, cap_nodes;
    struct source_file *files;
    int n_files, cap_files;
    struct problem *probs;
    int n_probs, cap_probs;
    char *chain[R1_RECIPE_MAX_EXTENDS]; /* real paths of the files being loaded (cycle check) */
    int depth;
    char *extends;            /* real path of the main file's parent */
    struct node *const *stage_nodes; /* the stage maps, in order */
    bool oom;
};

/* file:line:col of a node, for r1_recipe_problem. */
#define AT(n) (n)->src, (n)->line, (n)->col

char *r1_recipe_xstrdup(struct loader *ld, const char *s);

/* Records a problem at file src, line:col (line 0: no position). */
void r1_recipe_problem(struct loader *ld, int src, int line, int col, const char *fmt, ...)
    __attribute__((format(printf, 5, 6)));

/* The value of key in map m; NULL when m is not a map or lacks the key. */
struct node *r1_recipe_map_get(const struct node *m, const char *key);

/* A plain scalar that YAML reads as null: empty, ~ or null. */
bool r1_recipe_node_is_null(const struct node *n);

/* "a map", "a list" or "a single value", for messages. */
const char *r1_recipe_node_kind_name(const struct node *n);

/* rel against the directory of base (a recipe file; NULL: the working directory);
 * "$R1_CACHE/…" and "~/…" expand to the model cache ($R1_CACHE, else ~/.cache/r1) and
 * $HOME. */
char *r1_recipe_join_path(struct loader *ld, const char *base, const char *rel);

/* Loads the recipe at path and, recursively, the parents it extends, merged into one
 * tree; via is the `extends` node that names path (NULL for the main recipe).  NULL
 * after a problem. */
struct node *r1_recipe_load_tree(struct loader *ld, const char *path, const struct node *via);

/* Applies one --set KEY=VALUE (KEY a dotted path; stages.<name>.key picks a stage by
 * name) to the merged tree. */
void r1_recipe_apply_set(struct loader *ld, struct node *root, const char *arg);

#endif
