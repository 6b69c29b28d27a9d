/* cmds.h - the commands of the r1 binary (one cmd/<name>.c each). */
#ifndef R1_CMD_CMDS_H
#define R1_CMD_CMDS_H

#include <stdint.h>

/* Each returns the process exit status: 0 ok, 1 runtime error, 2 usage or bad
 * input, 130 interrupted.  argv[0] is the command name. */
int cmd_init(int argc, char **argv);
int cmd_sample(int argc, char **argv);
int cmd_run(int argc, char **argv);
int cmd_resume(int argc, char **argv);
int cmd_recipe(int argc, char **argv);
int cmd_verify(int argc, char **argv);
int cmd_status(int argc, char **argv);
int cmd_log(int argc, char **argv);
int cmd_export(int argc, char **argv);
int cmd_convert(int argc, char **argv);
int cmd_data(int argc, char **argv);
int cmd_tokenize(int argc, char **argv);
int cmd_eval(int argc, char **argv);
int cmd_report(int argc, char **argv);

/* Prints "r1 CMD: <last error>" and returns the exit status for code. */
int cmd_fail(const char *cmd, int code);

/* Shared by status, export and report (cmd/status.c); they print nothing. */
struct r1_recipe;
/* Checks that dir is a run directory (R1_EINVAL when not) and loads its
 * recipe.lock.yaml into *out (free with r1_recipe_free). */
int cmd_run_dir_load(struct r1_recipe **out, const char *dir);
/* 1 when dir's ledger holds the tag stage/<stage> (the stage finished), 0 when not,
 * or a negative R1_E* code. */
int cmd_stage_finished(const char *dir, const char *stage);
/* Where one stage stands, as `r1 status` shows it. */
struct cmd_stage_state {
    const char *state; /* done, running, failed, interrupted or pending (static) */
    int64_t step;      /* newest checkpoint's step (a running stage: its live step) */
    int64_t steps;     /* the stage's length; -1 when not known yet */
};
/* Fills out[i] for each of r's r->n_stages stages from the run in dir. */
int cmd_stage_states(struct cmd_stage_state *out, const struct r1_recipe *r, const char *dir);

/* Shared by sample, tokenize and eval (cmd/model-open.c); they print nothing. */
struct r1_backend;
struct r1_model;
struct r1_tokenizer;
struct r1_chat_template;
/* Opens the model at path on be into *m (skipped when m is NULL) and its tokenizer. */
int cmd_model_open(const char *path, struct r1_backend *be, struct r1_model **m,
                   struct r1_tokenizer **tok);
/* --dtype NAME of sample and eval: "f32" (NULL too) or "bf16" into *out (an enum
 * r1_dtype, the generation weights); R1_EINVAL otherwise. */
int cmd_gen_dtype(const char *name, int *out);
/* The chat template a command renders with: setting (--template NAME, "auto" or NULL for
 * the model's own) resolved against the model's template; R1_EINVAL naming model_path and
 * asking for --template when there is none. */
int cmd_chat_template_open(struct r1_chat_template **out, const char *setting,
                           const struct r1_tokenizer *tok, const char *model_path);

#endif
