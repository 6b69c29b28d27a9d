/* pipeline.h - runs a recipe's stages in order, with checkpoints in a run directory.
 *
 * For each stage: find its newest checkpoint in the ledger; a finished stage is
 * skipped, an interrupted one continues from its checkpoint, a new one starts from
 * its init source (a preset, a model directory, or an earlier stage's final
 * checkpoint).  Every save_every updates and at the end the stage writes a checkpoint
 * (core/checkpoint: atomic, content-addressed, one ledger commit each); a finished
 * stage is tagged stage/<name>.  The run directory also holds recipe.lock.yaml (the
 * resolved recipe), run.json (the recipe path and --set overrides, for resume) and
 * metrics.jsonl (one JSON object per update).  Nothing here prints: progress goes to
 * a callback, errors are returned. */
#ifndef R1_STAGES_PIPELINE_H
#define R1_STAGES_PIPELINE_H

#include <signal.h>
#include <stdbool.h>

#include "core/recipe.h"
#include "stages/stage.h"

struct r1_pipeline_opts {
    const char *recipe_path;
    const char *const *sets;
    int n_sets;
    const char *run_dir; /* NULL: runs/<recipe name> */
    int threads;         /* <= 0: all */
    bool resume;         /* continue an existing run directory */
    bool force;          /* resume even when the recipe changed (recorded in the ledger) */
    volatile sig_atomic_t *stop; /* set by a signal handler: checkpoint and return R1_EINTR */
    /* progress: called after every update and when a stage starts or is skipped */
    void (*on_event)(void *user, const char *stage, const char *what,
                     const struct r1_stage_metrics *m);
    void *user;
};

/* Runs (or resumes) the recipe.  Recipe problems: R1_EINVAL with every line in diag. */
int r1_pipeline_run(const struct r1_pipeline_opts *o, struct r1_recipe_diag *diag);

/* Reads run.json of an existing run: the recipe path and --set list (caller frees
 * with r1_pipeline_run_info_release). */
struct r1_pipeline_run_info {
    char *recipe_path;
    char **sets;
    int n_sets;
};
int r1_pipeline_read_run_info(struct r1_pipeline_run_info *info, const char *run_dir);
void r1_pipeline_run_info_release(struct r1_pipeline_run_info *info);

#endif
