/* run.c - `r1 run RECIPE` and `r1 resume [DIR]`: run a recipe's stages in a run
 * directory, or continue one.  SIGINT/SIGTERM finish the current update, write a
 * checkpoint and exit 130. */
#include <inttypes.h>
#include <signal.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cmd/cmds.h"
#include "cmd/opt.h"
#include "core/err.h"
#include "stages/pipeline.h"

static volatile sig_atomic_t stop_flag;

static void on_signal(int sig)
{
    (void)sig;
    stop_flag = 1;
}

static void on_event(void *user, const char *stage, const char *what,
                     const struct r1_stage_metrics *m)
{
    (void)user;
    if (strcmp(what, "step") == 0 || strcmp(what, "eval") == 0) {
        printf("%s %s %" PRId64, stage, what, m->step);
        for (int i = 0; i < m->n; i++)
            printf(" %s %.4g", m->keys[i], m->values[i]);
        printf("\n");
    }
    else if (strcmp(what, "checkpoint") == 0)
        printf("%s checkpoint at step %" PRId64 "\n", stage, m->step);
    else if (strcmp(what, "done") == 0)
        printf("%s already finished\n", stage);
    else
        printf("%s %s\n", stage, what);
    fflush(stdout);
}

/* Collects repeated --set K=V (and --set=K=V) out of argv before the table parser. */
static int take_sets(const char *cmd, int *argc, char **argv, const char **sets, int *n_sets,
                     int max)
{
    int w = 1;
    for (int i = 1; i < *argc; i++) {
        const char *v = NULL;
        if (strcmp(argv[i], "--set") == 0) {
            if (i + 1 >= *argc) {
                fprintf(stderr, "r1 %s: --set needs KEY=VALUE\n", cmd);
                return 2;
            }
            v = argv[++i];
        } else if (strncmp(argv[i], "--set=", 6) == 0) {
            v = argv[i] + 6;
        } else {
            argv[w++] = argv[i];
            continue;
        }
        if (*n_sets >= max) {
            fprintf(stderr, "r1 %s: more than %d --set options\n", cmd, max);
            return 2;
        }
        sets[(*n_sets)++] = v;
    }
    *argc = w;
    return 0;
}

static int finish(const char *cmd, int rc, struct r1_recipe_diag *diag)
{
    if (rc && diag->n > 0) {
        for (int i = 0; i < diag->n; i++)
            fprintf(stderr, "%s\n", diag->msgs[i]);
        fprintf(stderr, "r1 %s: %d problem%s in the recipe; nothing was run\n", cmd, diag->n,
                diag->n == 1 ? "" : "s");
        r1_recipe_diag_release(diag);
        return 2;
    }
    r1_recipe_diag_release(diag);
    return rc ? cmd_fail(cmd, rc) : 0;
}

static void install_handlers(void)
{
    struct sigaction sa;
    memset(&sa, 0, sizeof(sa));
    sa.sa_handler = on_signal;
    sigaction(SIGINT, &sa, NULL);
    sigaction(SIGTERM, &sa, NULL);
}

int cmd_run(int argc, char **argv)
{
    const char *run_dir = NULL, *sets[64];
    int n_sets = 0, threads = 0;
    const struct r1_option opts[] = {
        {R1_OPT_STRING, "run-dir", 0, &run_dir, "DIR", "run directory (default runs/<recipe name>)"},
        {R1_OPT_INT, "threads", 0, &threads, "N", "CPU threads (default: all)"},
        {R1_OPT_END, NULL, 0, NULL, NULL, NULL},
    };
    const char *usage = "RECIPE [--run-dir DIR] [--set KEY=VALUE]...";
    const char *summary = "Runs every stage of a recipe, writing checkpoints, metrics.jsonl and a git\n"
                          "ledger into the run directory.  --set KEY=VALUE overrides a recipe key\n"
                          "(dotted path, e.g. stages.sft.steps=50); it may repeat.";
    int rc = take_sets("run", &argc, argv, sets, &n_sets, 64);
    const char *pos[1];
    int npos = 0;
    if (!rc)
        rc = r1_opt_parse("run", usage, summary, opts, argc, argv, pos, 1, &npos);
    if (rc)
        return rc == R1_OPT_HELP ? 0 : rc;
    if (npos != 1) {
        fprintf(stderr, "r1 run: needs a RECIPE file (see 'r1 run --help')\n");
        return 2;
    }
    install_handlers();
    struct r1_pipeline_opts o = {pos[0], sets, n_sets, run_dir, threads, false, false,
                                 &stop_flag, on_event, NULL};
    struct r1_recipe_diag diag = {0};
    return finish("run", r1_pipeline_run(&o, &diag), &diag);
}

int cmd_resume(int argc, char **argv)
{
    bool force = false;
    int threads = 0;
    const struct r1_option opts[] = {
        {R1_OPT_FLAG, "force", 0, &force, NULL,
         "continue even if the recipe file changed (recorded in the ledger)"},
        {R1_OPT_INT, "threads", 0, &threads, "N", "CPU threads (default: all)"},
        {R1_OPT_END, NULL, 0, NULL, NULL, NULL},
    };
    const char *pos[1];
    int npos = 0;
    int rc = r1_opt_parse("resume", "[DIR] [--force]",
                          "Continues a run from the latest checkpoint of its first unfinished\n"
                          "stage.  Refuses when the recipe changed, unless --force.",
                          opts, argc, argv, pos, 1, &npos);
    if (rc)
        return rc == R1_OPT_HELP ? 0 : rc;
    const char *dir = npos ? pos[0] : ".";
    struct r1_pipeline_run_info info;
    if ((rc = r1_pipeline_read_run_info(&info, dir)))
        return cmd_fail("resume", rc);
    install_handlers();
    struct r1_pipeline_opts o = {info.recipe_path, (const char *const *)info.sets, info.n_sets,
                                 dir, threads, true, force, &stop_flag, on_event, NULL};
    struct r1_recipe_diag diag = {0};
    rc = r1_pipeline_run(&o, &diag);
    r1_pipeline_run_info_release(&info);
    return finish("resume", rc, &diag);
}
