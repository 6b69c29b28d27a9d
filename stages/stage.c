/* stage.c - the stage table: one row per stage kind r1 can train. */
#include "stages/stage.h"

extern const struct r1_stage_ops r1_lm_stage_ops;   /* stages/lm.c: pretrain and sft */
extern const struct r1_stage_ops r1_grpo_stage_ops; /* stages/grpo.c */

const struct r1_stage_ops *r1_stage_ops_find(enum r1_stage_kind kind)
{
    switch (kind) {
    case R1_STAGE_PRETRAIN:
    case R1_STAGE_SFT:
        return &r1_lm_stage_ops;
    case R1_STAGE_GRPO:
        return &r1_grpo_stage_ops;
    default:
        return NULL;
    }
}
