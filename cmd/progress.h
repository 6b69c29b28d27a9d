/* progress.h - what `r1 run` and `r1 resume` print while a recipe runs: a header (what
 * will run), progress per stage, and a summary table at the end.
 *
 * On a terminal each running stage has one line rewritten in place (\r, clear to end
 * of line); eval, checkpoint and stage lines print above it.  Elsewhere (a file, a
 * pipe) a stage's step prints as a plain line at most every `every` seconds, plus its
 * first and last step.  quiet keeps only the summary.  The functions are the
 * pipeline's callbacks (stages/pipeline.h), with the progress as user. */
#ifndef R1_CMD_PROGRESS_H
#define R1_CMD_PROGRESS_H

#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>

#include "stages/pipeline.h"

enum cmd_stage_status {
    CMD_STAGE_PENDING = 0, /* not reached */
    CMD_STAGE_RUNNING,
    CMD_STAGE_DONE,     /* finished by this process */
    CMD_STAGE_FINISHED, /* already finished before it */
};

struct cmd_stage_row {
    char name[64], kind[32];
    int64_t cfg_steps, cfg_epochs;
    enum cmd_stage_status status;
    int64_t first, step, total;    /* step at start (resume), last step seen, steps in all */
    double t_start, t_prev, t_end; /* seconds (monotonic) */
    double tokens, tokens_s;       /* tokens since start; their seconds */
    double direct_tps;             /* gen_tokens_per_s when the stage reports it, else -1 */
    const char *head;              /* "loss" or "reward" */
    double head_v, acc;            /* acc < 0: none */
    char eval_key[48];
    double eval_first, eval_last;
    int n_eval;
    double last_print;
    struct r1_pipeline_stage_plan plan;
    bool have_plan;
};

struct cmd_progress {
    FILE *out;
    bool tty, quiet;
    double every;   /* seconds between plain lines; 0: every step */
    bool line_open; /* a \r line is on the terminal */
    int n_rows;
    struct cmd_stage_row *rows;
};

/* tty: rewrite lines in place (pass isatty(fileno(out))). */
void cmd_progress_init(struct cmd_progress *p, FILE *out, bool tty, bool quiet, double every);
void cmd_progress_release(struct cmd_progress *p);

void cmd_progress_header(void *user, const struct r1_pipeline_header *h);
void cmd_progress_plan(void *user, const struct r1_pipeline_stage_plan *plan);
void cmd_progress_event(void *user, const char *stage, const char *what,
                        const struct r1_stage_metrics *m);
/* The table of stages; rc is what the pipeline returned (R1_EINTR: interrupted). */
void cmd_progress_summary(struct cmd_progress *p, int rc);

#endif
