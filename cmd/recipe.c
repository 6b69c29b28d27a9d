/* recipe.c - `r1 recipe check|show|keys`: validate a recipe, print it fully resolved, or
 * print the schema table.
 *
 * `--set KEY=VALUE` may repeat, so it is taken out of argv here (in order) before the
 * remaining options go through r1_opt_parse. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cmd/cmds.h"
#include "cmd/opt.h"
#include "core/err.h"
#include "core/recipe.h"
#include "stages/pipeline.h"

static const char summary[] =
    "Recipes describe a whole post-training run (model, seed, stages).\n\n"
    "subcommands:\n"
    "  check FILE [--set KEY=VALUE]...  validate; print every problem as file:line:col\n"
    "  show FILE [--set KEY=VALUE]...   print the fully resolved recipe (defaults filled)\n"
    "  keys                             print every recipe key (type, default, range)";

/* Moves "--set K=V" / "--set=K=V" out of argv[from..argc) into sets; returns the new argc. */
static int take_sets(int argc, char **argv, int from, const char **sets, int *n_sets, int *bad)
{
    int w = from;
    *n_sets = 0;
    *bad = 0;
    for (int i = from; i < argc; i++) {
        if (strcmp(argv[i], "--") == 0) {
            while (i < argc)
                argv[w++] = argv[i++];
            break;
        }
        if (strcmp(argv[i], "--set") == 0) {
            if (i + 1 >= argc) {
                fprintf(stderr, "r1 recipe: --set needs KEY=VALUE\n");
                *bad = 1;
                return w;
            }
            sets[(*n_sets)++] = argv[++i];
        } else if (strncmp(argv[i], "--set=", 6) == 0) {
            sets[(*n_sets)++] = argv[i] + 6;
        } else {
            argv[w++] = argv[i];
        }
    }
    return w;
}

static int load(const char *sub, const char *file, const char **sets, int n_sets,
                struct r1_recipe **out)
{
    struct r1_recipe_diag diag = {0};
    int rc = r1_recipe_load(out, file, sets, n_sets, &diag);
    if (rc == R1_EINVAL && diag.n > 0) {
        for (int i = 0; i < diag.n; i++)
            fprintf(stderr, "%s\n", diag.msgs[i]);
        fprintf(stderr, "r1 recipe %s: %s\n", sub, r1_err_last());
    } else if (rc) {
        fprintf(stderr, "r1 recipe %s: %s\n", sub, r1_err_last());
    }
    r1_recipe_diag_release(&diag);
    return rc ? r1_err_exit_status(rc) : 0;
}

static int recipe_file_cmd(const char *sub, int argc, char **argv)
{
    const char *set_help = NULL;
    const struct r1_option opts[] = {
        {R1_OPT_STRING, "set", 0, &set_help, "KEY=VALUE",
         "override a key (dotted path, e.g. stages.sft.steps=50); repeatable"},
        {R1_OPT_END, NULL, 0, NULL, NULL, NULL},
    };
    const char **sets = calloc((size_t)argc + 1, sizeof(*sets));
    if (!sets) {
        fprintf(stderr, "r1 recipe %s: out of memory\n", sub);
        return 1;
    }
    int n_sets, bad;
    argc = take_sets(argc, argv, 1, sets, &n_sets, &bad);
    if (bad) {
        free(sets);
        return R1_EXIT_USAGE;
    }
    char cmd[32];
    snprintf(cmd, sizeof(cmd), "recipe %s", sub);
    const char *pos[1];
    int npos = 0;
    int rc = r1_opt_parse(cmd, "FILE [--set KEY=VALUE]...",
                          strcmp(sub, "check") == 0
                              ? "Validates a recipe and prints every problem as file:line:col: "
                                "message\n(exit 2 on any problem), or 'FILE: ok (N stages)'."
                              : "Prints the fully resolved recipe: every key, defaults filled, "
                                "paths absolute.",
                          opts, argc, argv, pos, 1, &npos);
    if (rc) {
        free(sets);
        return rc == R1_OPT_HELP ? 0 : rc;
    }
    if (npos != 1) {
        fprintf(stderr, "r1 recipe %s: name the recipe FILE (see 'r1 recipe %s --help')\n", sub,
                sub);
        free(sets);
        return R1_EXIT_USAGE;
    }
    struct r1_recipe *r = NULL;
    rc = load(sub, pos[0], sets, n_sets, &r);
    free(sets);
    if (rc)
        return rc;
    if (strcmp(sub, "check") == 0) {
        if ((rc = r1_pipeline_check(r))) { /* the stages' own checks, as r1 run makes them */
            fprintf(stderr, "r1 recipe check: %s\n", r1_err_last());
            r1_recipe_free(r);
            return r1_err_exit_status(rc);
        }
        printf("%s: ok (%d stage%s)\n", pos[0], r->n_stages, r->n_stages == 1 ? "" : "s");
    } else if ((rc = r1_recipe_write_yaml(r, stdout))) {
        r1_recipe_free(r);
        return cmd_fail("recipe show", rc);
    }
    r1_recipe_free(r);
    return 0;
}

static int recipe_keys(int argc, char **argv)
{
    const struct r1_option opts[] = {{R1_OPT_END, NULL, 0, NULL, NULL, NULL}};
    int npos = 0;
    int rc = r1_opt_parse("recipe keys", "",
                          "Prints every recipe key as a markdown table: dotted path, type,\n"
                          "default, allowed range or choices, the stage kinds it applies to.",
                          opts, argc, argv, NULL, 0, &npos);
    if (rc)
        return rc == R1_OPT_HELP ? 0 : rc;
    if ((rc = r1_recipe_write_keys(stdout)))
        return cmd_fail("recipe keys", rc);
    return 0;
}

int cmd_recipe(int argc, char **argv)
{
    const struct r1_option none[] = {{R1_OPT_END, NULL, 0, NULL, NULL, NULL}};
    if (argc < 2 || argv[1][0] == '-') {
        int npos = 0;
        int rc = r1_opt_parse("recipe", "check|show|keys [FILE] [--set KEY=VALUE]...", summary,
                              none, argc, argv, NULL, 0, &npos);
        if (rc)
            return rc == R1_OPT_HELP ? 0 : rc;
        fprintf(stderr, "r1 recipe: name a subcommand: check, show or keys (see 'r1 recipe "
                        "--help')\n");
        return R1_EXIT_USAGE;
    }
    if (strcmp(argv[1], "check") == 0 || strcmp(argv[1], "show") == 0)
        return recipe_file_cmd(argv[1], argc - 1, argv + 1);
    if (strcmp(argv[1], "keys") == 0)
        return recipe_keys(argc - 1, argv + 1);
    fprintf(stderr, "r1 recipe: '%s' is not a subcommand (check, show, keys)\n", argv[1]);
    return R1_EXIT_USAGE;
}
