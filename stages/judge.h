/* judge.h - a generative judge: a causal LM that reads a question, its reference answer and
 * a prediction (the judge prompt, stages/data/prompts.h) and whose next token is a
 * verdict.  The verdict is read by log-probability, with no free-form parsing:
 *     P(yes) = σ(z_yes - z_no)
 * with z the judge's logits of the first token of the two verdict words at the end of the
 * prompt (the DeepSeek-R1 paper widened rejection sampling beyond rule-checkable prompts
 * with such a judge; issue 11).
 *
 * Batching: prompts go through the judge's forward in micro-batches of R1_JUDGE_ROWS rows,
 * right-padded, the logits read at each row's last token (r1_model_logits).  A prompt
 * longer than the judge's limit loses tokens from its front, so the prediction and the
 * question of the verdict always stay.
 *
 * Cache: every verdict is kept by the sha256 of its prompt text (the judge identity is the
 * caller's: one cache per judge model), so scoring the same (question, reference,
 * prediction) again costs nothing; r1_judge_stats counts hits and misses. */
#ifndef R1_STAGES_JUDGE_H
#define R1_STAGES_JUDGE_H

#include <stdbool.h>
#include <stdint.h>

#include "core/model.h"
#include "core/tokenizer.h"

#define R1_JUDGE_ROWS 8

struct r1_judge;

/* m: the judge (a causal LM, borrowed; the judge reserves its activations), tok: its
 * tokenizer (borrowed).  template_: NULL for R1_JUDGE_TEMPLATE; yes, no: the verdict words
 * (NULL: "yes", "no"), whose first tokens must differ.  max_len: tokens per prompt (<= the
 * model's max_seq_len; 0: min(512, max_seq_len)).  R1_EINVAL naming the problem. */
int r1_judge_create(struct r1_judge **out, struct r1_model *m, const struct r1_tokenizer *tok,
                    const char *template_, const char *yes, const char *no, int max_len);
void r1_judge_free(struct r1_judge *j);

/* p_yes[i] = P(yes) of (questions[i], references[i], predictions[i]), i < n. */
int r1_judge_score(struct r1_judge *j, int n, const char *const *questions,
                   const char *const *references, const char *const *predictions, float *p_yes);

/* Verdicts answered from the cache and computed, since creation. */
void r1_judge_stats(const struct r1_judge *j, int64_t *hits, int64_t *misses);

/* The judge's identity: the sha256 of its weights as loaded (hex).  Cache keys include it,
 * so two judges never share a verdict. */
const char *r1_judge_sha256(const struct r1_judge *j);

/* Keeps the cache in a log file too: reads the verdicts path holds (a torn last record, from
 * a process killed mid-write, is cut off), then appends every verdict computed from now on
 * (flushed per micro-batch), so a resumed or repeated run never pays for a verdict twice.
 * write false: read only (the ranks of a job but 0).  *loaded gets the records read. */
int r1_judge_log_open(struct r1_judge *j, const char *path, bool write, int64_t *loaded);
/* The sha256 of the verdict log as written so far into hex (the log is flushed first);
 * hex "" when this judge writes none.  Stages record it among their R1-Data trailers. */
int r1_judge_log_sha256(struct r1_judge *j, char hex[65]);

/* ---- the judge reward ------------------------------------------------------------------ */
struct r1_reward_cfg;
struct r1_stage_env;

/* The judge of a reward entry (cfg->judge, cfg->judge_template), its model opened through
 * env->open_model and owned by the judge.  R1_EINVAL naming the recipe, the stage and key
 * when it cannot be loaded or is not a causal LM. */
int r1_judge_open(struct r1_judge **out, const struct r1_stage_env *env,
                  const struct r1_reward_cfg *cfg, const char *key);
/* r1_judge_open plus the stage's verdict log, RUN/judge/<stage>.log (r1_judge_log_open;
 * rank 0 of env->dist writes it, every rank reads it), and the judge's entry for the
 * stage's R1-Data trailers: name "judge:<last part of the spec>" into name (cap 96) and the
 * weights' sha256 into sha (65). */
int r1_judge_open_logged(struct r1_judge **out, const struct r1_stage_env *env,
                         const struct r1_reward_cfg *cfg, const char *key, char *name,
                         char *sha);
/* Opens the judge of a model file or directory for r1 eval (model owned). */
int r1_judge_open_path(struct r1_judge **out, struct r1_backend *be, const char *path,
                       const struct r1_reward_cfg *cfg);
/* P(yes) of n completions, out[i]: the judge reads questions[i], references[i] and the
 * final answer of completions[i] (r1_extract_answer per cfg->answer, outside <think>, with
 * the template's pre-filled <think> of prompts[i] put back; "" when there is none). */
int r1_judge_completions(struct r1_judge *j, const struct r1_reward_cfg *cfg, int n,
                         const char *const *questions, const char *const *references,
                         const char *const *prompts, const char *const *completions,
                         double *out);

#endif
