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
 * callbacks (on_header, on_plan, on_event), errors are returned. */
#ifndef R1_STAGES_PIPELINE_H
#define R1_STAGES_PIPELINE_H

#include <signal.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "core/recipe.h"
#include "stages/stage.h"

/* What will run, handed to on_header once the recipe is validated and the backend is
 * up, before any stage starts.  All borrowed for the duration of the call. */
struct r1_pipeline_stage_info {
    const char *name, *kind;
    const char *init;  /* the init source: "scratch:<preset>", a directory or a stage name */
    int64_t steps, epochs; /* exactly one is > 0 */
    int64_t n_params;  /* parameters of the model it starts from; -1: known when it starts */
};
struct r1_pipeline_header {
    const char *recipe_name, *recipe_path;
    const char *hash; /* sha256 of the resolved recipe */
    const char *run_dir;
    const char *backend; /* the backend's name ("cpu", "cuda") */
    int threads;         /* as asked: <= 0: all */
    bool resume;
    int n_stages;
    const struct r1_pipeline_stage_info *stages;
    int world; /* processes in the job (1 without mpirun) */
    const char *transport; /* what carries their sums (r1_dist_transport) */
};

/* A stage's memory plan, handed to on_plan when the stage has built its model and
 * state (before its "start" or "resume" event): the real arena sizes in bytes.
 * optim_bytes is the AdamW state (two moments, laid out like the gradients);
 * activation_bytes the model's activation arena as the stage reserved it.  Caches a
 * stage allocates for itself (the KV cache of sampling stages, a reference model) are
 * not counted. */
struct r1_pipeline_stage_plan {
    const char *stage, *kind;
    int64_t done, total; /* steps done (when resuming) and in total */
    int64_t n_params;
    size_t param_bytes, grad_bytes, optim_bytes, activation_bytes;
    size_t param16_bytes; /* the bf16 copy of the parameters (precision bf16), else 0 */
    size_t workspace_bytes; /* the backend's scratch for the ops, reserved for the largest calls */
    /* everything else the stage holds on the backend after its init: KV caches of its
     * generators, a reference or reward model */
    size_t other_bytes;
};

struct r1_pipeline_opts {
    const char *recipe_path;
    const char *const *sets;
    int n_sets;
    const char *run_dir; /* NULL: runs/<recipe name> */
    int threads;         /* <= 0: all */
    bool resume;         /* continue an existing run directory */
    bool force;          /* resume even when the recipe changed (recorded in the ledger) */
    /* the job's processes (core/dist.h; NULL: one).  Rank 0 alone writes the run directory
     * and calls the callbacks below; data-parallel stages split their work over the ranks */
    struct r1_dist *dist;
    volatile sig_atomic_t *stop; /* set by a signal handler: checkpoint and return R1_EINTR */
    /* progress: called after every update and when a stage starts or is skipped */
    void (*on_event)(void *user, const char *stage, const char *what,
                     const struct r1_stage_metrics *m);
    void *user;
    /* optional (NULL: none): what will run, and each stage's memory plan */
    void (*on_header)(void *user, const struct r1_pipeline_header *h);
    void (*on_plan)(void *user, const struct r1_pipeline_stage_plan *p);
};

/* Runs (or resumes) the recipe.  Recipe problems: R1_EINVAL with every line in diag. */
int r1_pipeline_run(const struct r1_pipeline_opts *o, struct r1_recipe_diag *diag);

/* What r1_pipeline_run checks of a loaded recipe before any work: every stage of a kind
 * this build trains, its kind's own checks (sizes that must divide, data files, model
 * sources), the chat template.  0 or R1_EINVAL with the message. */
int r1_pipeline_check(const struct r1_recipe *r);

/* Reads run.json of an existing run: the recipe path and --set list (caller frees
 * with r1_pipeline_run_info_release). */
struct r1_pipeline_run_info {
    char *recipe_path;
    int world_size; /* processes the run was started with (1 when run.json predates it) */
    char **sets;
    int n_sets;
};
int r1_pipeline_read_run_info(struct r1_pipeline_run_info *info, const char *run_dir);
void r1_pipeline_run_info_release(struct r1_pipeline_run_info *info);

#endif
