/* run.c - `r1 run RECIPE` and `r1 resume [DIR]`: run a recipe's stages in a run
 * directory, or continue one.  SIGINT/SIGTERM finish the current update, write a
 * checkpoint and exit 130. */
#include <inttypes.h>
#include <signal.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <unistd.h>
#include <string.h>

#include "cmd/cmds.h"
#include "cmd/opt.h"
#include "core/err.h"
#include "cmd/progress.h"
#include "core/dist.h"
#include "stages/pipeline.h"

static volatile sig_atomic_t stop_flag;

static void on_signal(int sig)
{
    (void)sig;
    stop_flag = 1;
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

/* Prints the outcome and returns the exit status.  Under mpirun the lead rank prints; another
 * rank prints only a failure of its own ("rank N: ..."), so a message shows once. */
static int finish(const char *cmd, int rc, struct r1_recipe_diag *diag, const struct r1_dist *d)
{
    bool lead = !d || d->rank == 0;
    bool own = !d || d->world <= 1 || !d->agreed || d->culprit == d->rank;
    if (rc && diag->n > 0) {
        for (int i = 0; lead && i < diag->n; i++)
            fprintf(stderr, "%s\n", diag->msgs[i]);
        if (lead)
            fprintf(stderr, "r1 %s: %d problem%s in the recipe; nothing was run\n", cmd, diag->n,
                    diag->n == 1 ? "" : "s");
        r1_recipe_diag_release(diag);
        return 2;
    }
    r1_recipe_diag_release(diag);
    if (!rc)
        return 0;
    if (lead || own) {
        if (d && d->world > 1)
            fprintf(stderr, "r1 %s: rank %d: %s\n", cmd, d->rank, r1_err_last());
        else
            fprintf(stderr, "r1 %s: %s\n", cmd, r1_err_last());
    }
    return r1_err_exit_status(rc);
}

/* Leaves the job: with every rank leaving together, normally; when this rank failed alone
 * (the others may wait in a collective for it), by ending the whole job with its status. */
static int leave(struct r1_dist *d, int rc, int status)
{
    if (d && d->world > 1 && rc && !d->agreed)
        r1_dist_abort(d, status);
    r1_dist_free(d);
    return status;
}

/* The progress options both commands take. */
#define PROGRESS_OPTS(quiet, every)                                                          \
    {R1_OPT_FLAG, "quiet", 'q', &quiet, NULL, "print only errors and the summary table"},     \
    {R1_OPT_FLOAT, "progress-every", 0, &every, "SEC",                                        \
     "off a terminal, a progress line every SEC s at most (default 10; 0: every step)"}

#define PROGRESS_HELP                                                                        \
    "\n\nPrints a header (recipe, run dir, backend, one row per stage with its parameter\n"   \
    "count), then per stage a line with its memory plan and progress (step/steps, loss or\n" \
    "reward, accuracy, tokens/s, ETA): rewritten in place on a terminal, else a plain line\n" \
    "every --progress-every seconds.  A table of the stages ends the run."

/* Runs the pipeline with the progress display on stdout (rank 0 only) and the summary. */
static int run_pipeline(struct r1_pipeline_opts *o, bool quiet, float every,
                        struct r1_recipe_diag *diag)
{
    struct cmd_progress p;
    bool lead = !o->dist || o->dist->rank == 0;
    if (lead) {
        /* mpirun hands its ranks a pseudo-terminal even when its own output is a file */
        bool tty = isatty(STDOUT_FILENO) == 1 && (!o->dist || o->dist->world <= 1);
        cmd_progress_init(&p, stdout, tty, quiet, every);
        o->on_event = cmd_progress_event;
        o->on_header = cmd_progress_header;
        o->on_plan = cmd_progress_plan;
        o->user = &p;
    }
    int rc = r1_pipeline_run(o, diag);
    if (lead) {
        cmd_progress_summary(&p, rc);
        cmd_progress_release(&p);
    }
    return rc;
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
    bool quiet = false;
    float every = 10;
    const struct r1_option opts[] = {
        {R1_OPT_STRING, "run-dir", 0, &run_dir, "DIR", "run directory (default runs/<recipe name>)"},
        {R1_OPT_INT, "threads", 0, &threads, "N", "CPU threads (default: all)"},
        PROGRESS_OPTS(quiet, every),
        {R1_OPT_END, NULL, 0, NULL, NULL, NULL},
    };
    const char *usage = "RECIPE [--run-dir DIR] [--set KEY=VALUE]...";
    const char *summary = "Runs every stage of a recipe, writing checkpoints, metrics.jsonl and a git\n"
                          "ledger into the run directory.  --set KEY=VALUE overrides a recipe key\n"
                          "(dotted path, e.g. stages.sft.steps=50); it may repeat." PROGRESS_HELP;
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
    struct r1_dist *dist = NULL;
    if ((rc = r1_dist_init(&dist)))
        return cmd_fail("run", rc);
    install_handlers();
    struct r1_pipeline_opts o = {.recipe_path = pos[0], .sets = sets, .n_sets = n_sets,
                                 .run_dir = run_dir, .threads = threads, .stop = &stop_flag,
                                 .dist = dist};
    struct r1_recipe_diag diag = {0};
    rc = run_pipeline(&o, quiet, every, &diag);
    return leave(dist, rc, finish("run", rc, &diag, dist));
}

int cmd_resume(int argc, char **argv)
{
    bool force = false, quiet = false;
    float every = 10;
    int threads = 0;
    const struct r1_option opts[] = {
        {R1_OPT_FLAG, "force", 0, &force, NULL,
         "continue even if the recipe file changed (recorded in the ledger)"},
        {R1_OPT_INT, "threads", 0, &threads, "N", "CPU threads (default: all)"},
        PROGRESS_OPTS(quiet, every),
        {R1_OPT_END, NULL, 0, NULL, NULL, NULL},
    };
    const char *pos[1];
    int npos = 0;
    int rc = r1_opt_parse("resume", "[DIR] [--force]",
                          "Continues a run from the latest checkpoint of its first unfinished\n"
                          "stage.  Refuses when the recipe changed, unless --force." PROGRESS_HELP,
                          opts, argc, argv, pos, 1, &npos);
    if (rc)
        return rc == R1_OPT_HELP ? 0 : rc;
    const char *dir = npos ? pos[0] : ".";
    struct r1_pipeline_run_info info;
    if ((rc = r1_pipeline_read_run_info(&info, dir)))
        return cmd_fail("resume", rc);
    struct r1_dist *dist = NULL;
    if ((rc = r1_dist_init(&dist))) {
        r1_pipeline_run_info_release(&info);
        return cmd_fail("resume", rc);
    }
    install_handlers();
    struct r1_pipeline_opts o = {.recipe_path = info.recipe_path,
                                 .sets = (const char *const *)info.sets, .n_sets = info.n_sets,
                                 .run_dir = dir, .threads = threads, .resume = true,
                                 .force = force, .stop = &stop_flag, .dist = dist};
    struct r1_recipe_diag diag = {0};
    rc = run_pipeline(&o, quiet, every, &diag);
    r1_pipeline_run_info_release(&info);
    return leave(dist, rc, finish("resume", rc, &diag, dist));
}
