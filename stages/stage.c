/* stage.c - the stage table: one row per stage kind r1 can train. */
#include "stages/stage.h"

#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/err.h"
#include "core/file.h"
#include "core/hfdir.h"
#include "core/modelfile.h"
#include "core/optim.h"
#include "stages/data/gen.h"
#include "stages/data/prompts.h"

extern const struct r1_stage_ops r1_lm_stage_ops;   /* stages/lm.c: pretrain and sft */
extern const struct r1_stage_ops r1_grpo_stage_ops; /* stages/grpo.c */
extern const struct r1_stage_ops r1_reward_model_stage_ops; /* stages/reward_model.c */
extern const struct r1_stage_ops r1_rejection_sft_stage_ops; /* stages/rejection_sft.c */

const struct r1_stage_ops *r1_stage_ops_find(enum r1_stage_kind kind)
{
    switch (kind) {
    case R1_STAGE_PRETRAIN:
    case R1_STAGE_SFT:
        return &r1_lm_stage_ops;
    case R1_STAGE_GRPO:
    case R1_STAGE_ALIGN: /* grpo with general prompts and a reward model (stages/align.c) */
        return &r1_grpo_stage_ops;
    case R1_STAGE_REWARD_MODEL:
        return &r1_reward_model_stage_ops;
    case R1_STAGE_REJECTION_SFT:
        return &r1_rejection_sft_stage_ops;
    default:
        return NULL;
    }
}

int r1_stage_save_weights(const struct r1_model *m, const struct r1_tokenizer *tok,
                          const struct r1_optim *opt, const char *dir)
{
    char path[4200];
    int rc = r1_hfdir_save(m, dir, R1_F32);
    if (!rc)
        rc = r1_tokenizer_save_dir(tok, dir);
    if (rc)
        return rc;
    snprintf(path, sizeof(path), "%s/optimizer.safetensors", dir);
    return r1_optim_save(opt, path);
}

int r1_stage_load_weights(struct r1_model *m, struct r1_optim *opt, const char *dir)
{
    char path[4200];
    snprintf(path, sizeof(path), "%s/model.safetensors", dir);
    int rc = r1_model_load_safetensors(m, path);
    if (rc)
        return rc;
    snprintf(path, sizeof(path), "%s/optimizer.safetensors", dir);
    return r1_optim_load(opt, path);
}

int r1_stage_write_state(const char *dir, json_t *o)
{
    char path[4200];
    snprintf(path, sizeof(path), "%s/trainer_state.json", dir);
    char *text = o ? json_dumps(o, JSON_INDENT(2) | JSON_PRESERVE_ORDER) : NULL;
    json_decref(o);
    if (!text)
        return r1_err_set(R1_ENOMEM, "%s: out of memory for the trainer state", path);
    int rc = r1_file_write_atomic(path, text, strlen(text));
    free(text);
    return rc;
}

int r1_stage_check_prompt_data(const struct r1_recipe *r, int index)
{
    const struct r1_stage_cfg *s = &r->stages[index];
    if (!s->data.path && !s->data.generator)
        return r1_err_set(R1_EINVAL, "%s: stage '%s' samples prompts: set data.path (JSONL with "
                          "%s and %s) or data.generator", r->path, s->name, s->data.prompt_field,
                          s->data.answer_field);
    if (s->data.path && s->data.format != R1_DATA_JSONL)
        return r1_err_set(R1_EINVAL, "%s: stage '%s' reads prompts as JSONL: set data.format to "
                          "jsonl", r->path, s->name);
    if (s->data.generator) {
        struct r1_datagen *dg = NULL;
        int rc = r1_datagen_parse(&dg, s->data.generator);
        r1_datagen_free(dg);
        if (rc)
            return r1_err_wrap(rc, "%s: stage '%s' data.generator", r->path, s->name);
    }
    if (s->data.template_ && !r1_prompt_template_find(s->data.template_) &&
        !strstr(s->data.template_, "{prompt}"))
        return r1_err_set(R1_EINVAL, "%s: stage '%s' data.template '%s' is neither a template "
                          "name (none, r1-zero) nor text containing {prompt}", r->path, s->name,
                          s->data.template_);
    return 0;
}
