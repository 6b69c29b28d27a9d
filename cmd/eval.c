/* eval.c - `r1 eval`: pass@1 and maj@n of a model on a JSONL set of prompts with
 * reference answers, scored by named rewards.
 *
 *   r1 eval (--model PATH | --run DIR --stage NAME) --data FILE.jsonl [--reward NAME,...]
 *           [-n N] [--temperature T] [--top-p P] [--max-tokens M] [--seed S]
 *           [--chat | --template NAME] [--prompt-template NAME|TEXT] [--threshold X]
 *           [--out FILE.jsonl | --json]
 *
 * Each line of FILE is {"prompt": ..., "answer": ...} (more fields are kept for rewards
 * such as countdown).  A sample passes when the sum of its rewards (weight 1 each) is at
 * least --threshold (default 1.0: a correct answer under the accuracy reward).
 * pass@1 = mean over items of the share of passing samples; maj@n = share of items whose
 * most common extracted answer (ties: the one met first) equals the reference.  One JSON
 * object per item goes to --out (or stdout with --json):
 *   {"index", "prompt", "answer", "samples": [{"answer" (null: none), "reward", "pass",
 *    "tokens", "finish", "completion"}], "pass_rate", "majority" (null: none), "correct"}
 * and one summary line, to stdout (stderr when --json puts the items there):
 *   eval: 40 items, n=4: pass@1 0.612, maj@4 0.700
 * Sampling is deterministic given --seed (each sample has its own random stream). */
#include <errno.h>
#include <inttypes.h>
#include <jansson.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "cmd/cmds.h"
#include "cmd/opt.h"
#include "core/backend.h"
#include "core/checkpoint.h"
#include "core/err.h"
#include "core/template.h"
#include "core/utf8.h"
#include "stages/data/prompts.h"
#include "stages/evaluate.h"
#include "stages/judge.h"
#include "stages/rewards/rewards.h"

#define EVAL_MAX_REWARDS 16

struct eval_cfg {
    const char *model, *run, *stage, *data, *rewards, *template_, *prompt_template, *out;
    const char *judge; /* a .gguf or HF dir: the judge reward's model */
    const char *dtype_name;
    int n, max_tokens, threads, dtype, slots;
    float temperature, top_p, threshold;
    uint64_t seed;
    bool chat, json;
};

/* Splits "a,b" into reward configs with weight 1 and the recipe defaults. */
static int parse_rewards(char *list, struct r1_reward_cfg *cfgs, int *n)
{
    *n = 0;
    for (char *save = NULL, *tok = strtok_r(list, ",", &save); tok;
         tok = strtok_r(NULL, ",", &save)) {
        if (*n == EVAL_MAX_REWARDS)
            return r1_err_set(R1_EINVAL, "--reward: at most %d rewards", EVAL_MAX_REWARDS);
        cfgs[(*n)++] = (struct r1_reward_cfg){tok, 1.0f, R1_ANSWER_AUTO, "en", 3, -1.0f,
                                              {0}, NULL, R1_VERDICT_PROBABILITY, 0.5f};
    }
    if (*n == 0)
        return r1_err_set(R1_EINVAL, "--reward: name at least one reward");
    return r1_reward_check_list(cfgs, *n, "--reward");
}

static json_t *jstr(const char *s)
{
    char *clean = s ? r1_utf8_clean(s, strlen(s)) : NULL;
    json_t *v = clean ? json_string(clean) : json_null();
    free(clean);
    return v;
}

static int write_items(FILE *f, const struct r1_eval_report *r, const struct r1_prompt_set *set)
{
    for (int64_t i = 0; i < r->n_items; i++) {
        const struct r1_eval_item *it = &r->items[i];
        json_t *samples = json_array();
        for (int k = 0; samples && k < r->n; k++) {
            const struct r1_eval_sample *s = &it->samples[k];
            json_t *o = json_object();
            json_object_set_new(o, "answer", jstr(s->answer));
            json_object_set_new(o, "reward", json_real(s->reward));
            json_object_set_new(o, "pass", json_boolean(s->pass));
            json_object_set_new(o, "tokens", json_integer(s->tokens));
            json_object_set_new(o, "finish",
                                json_string(s->finish == R1_FINISH_STOP ? "stop" : "length"));
            json_object_set_new(o, "completion", jstr(s->completion));
            json_array_append_new(samples, o);
        }
        json_t *o = json_object();
        json_object_set_new(o, "index", json_integer(i));
        json_object_set_new(o, "prompt", jstr(set->items[i].question));
        json_object_set_new(o, "answer", jstr(set->items[i].answer));
        json_object_set_new(o, "samples", samples);
        json_object_set_new(o, "pass_rate", json_real(it->pass_rate));
        json_object_set_new(o, "majority",
                            jstr(it->majority >= 0 ? it->samples[it->majority].answer : NULL));
        json_object_set_new(o, "correct", json_boolean(it->correct));
        char *line = json_dumps(o, JSON_COMPACT | JSON_ENSURE_ASCII | JSON_PRESERVE_ORDER);
        json_decref(o);
        if (!line)
            return r1_err_set(R1_ENOMEM, "out of memory formatting item %" PRId64, i);
        fprintf(f, "%s\n", line);
        free(line);
    }
    return ferror(f) ? r1_err_set(R1_EIO, "write error on the items output") : 0;
}

/* The model directory: --model, or the newest checkpoint of --stage in --run. */
static int resolve_model(const struct eval_cfg *c, struct r1_checkpoint **ck, const char **dir)
{
    if (c->model) {
        *dir = c->model;
        return 0;
    }
    int rc = r1_checkpoint_latest(ck, c->run, c->stage);
    if (rc)
        return r1_err_wrap(rc, "--run %s", c->run);
    if (!*ck)
        return r1_err_set(R1_EINVAL, "%s: stage '%s' has no checkpoint; check the stage name "
                          "with r1 status %s", c->run, c->stage, c->run);
    *dir = (*ck)->dir;
    return 0;
}

static int run_eval(const struct eval_cfg *c)
{
    struct r1_reward_cfg rewards[EVAL_MAX_REWARDS];
    int n_rewards = 0;
    char *reward_list = strdup(c->rewards);
    struct r1_checkpoint *ck = NULL;
    struct r1_backend *be = NULL;
    struct r1_model *m = NULL;
    struct r1_tokenizer *tok = NULL;
    struct r1_chat_template *chat = NULL;
    struct r1_prompt_set *set = NULL;
    struct r1_eval_report *rep = NULL;
    struct r1_judge *judge = NULL;
    FILE *out = NULL;
    const char *dir = NULL;
    int rc = reward_list ? parse_rewards(reward_list, rewards, &n_rewards)
                         : r1_err_set(R1_ENOMEM, "out of memory");
    if (rc)
        goto done;
    if (access(c->data, R_OK) != 0) {
        rc = r1_err_set(R1_EINVAL, "%s: cannot read the data file (%s)", c->data,
                        strerror(errno));
        goto done;
    }
    if ((rc = resolve_model(c, &ck, &dir)) ||
        (rc = r1_backend_create(&be, R1_BACKEND_CPU, c->threads)) ||
        (rc = cmd_model_open(dir, be, &m, &tok)))
        goto done;
    if ((c->chat || c->template_) &&
        (rc = cmd_chat_template_open(&chat, c->template_, tok, dir)))
        goto done;
    int limit = m->cfg.max_seq_len - c->max_tokens;
    if (limit < 1) {
        rc = r1_err_set(R1_EINVAL, "--max-tokens %d leaves no room for a prompt in the model's "
                        "%d positions", c->max_tokens, m->cfg.max_seq_len);
        goto done;
    }
    struct r1_prompt_spec ps = {c->data, NULL, 0, 0, R1_SPLIT_EVAL, "prompt", "answer",
                                c->prompt_template, limit, chat ? chat->name : NULL,
                                tok->chat_template};
    if ((rc = r1_prompt_set_load(&set, &ps, tok)))
        goto done;
    const struct r1_reward_cfg *jc = r1_reward_find_judge(rewards, n_rewards);
    if (jc && !c->judge) {
        rc = r1_err_set(R1_EINVAL, "--reward judge needs --judge PATH (the judge model)");
        goto done;
    }
    if (c->judge && !jc) {
        rc = r1_err_set(R1_EINVAL, "--judge is read by the judge reward; add judge to --reward");
        goto done;
    }
    if (jc && (rc = r1_judge_open_path(&judge, be, c->judge, jc)))
        goto done;
    struct r1_eval_spec es = {set, c->n, c->temperature, c->top_p, c->max_tokens, c->seed,
                              rewards, n_rewards, NULL, (enum r1_dtype)c->dtype, NULL, judge,
                              c->slots};
    if ((rc = r1_eval_run(&rep, m, tok, &es, c->threshold, R1_ANSWER_AUTO)))
        goto done;
    if (c->out && !(out = fopen(c->out, "w"))) {
        rc = r1_err_set(R1_EIO, "%s: cannot create (%s)", c->out, strerror(errno));
        goto done;
    }
    if (out || c->json)
        rc = write_items(out ? out : stdout, rep, set);
    if (out && fclose(out) != 0 && !rc)
        rc = r1_err_set(R1_EIO, "%s: write error", c->out);
    out = NULL;
    if (!rc)
        fprintf(c->json ? stderr : stdout,
                "eval: %" PRId64 " items, n=%d: pass@1 %.3f, maj@%d %.3f\n", rep->n_items,
                rep->n, rep->pass_at_1, rep->n, rep->maj_at_n);
done:
    if (out)
        fclose(out);
    r1_eval_report_free(rep);
    r1_prompt_set_free(set);
    r1_chat_template_free(chat);
    r1_judge_free(judge);
    r1_tokenizer_free(tok);
    r1_model_free(m);
    r1_backend_free(be);
    r1_checkpoint_free(ck);
    free(reward_list);
    return rc;
}

int cmd_eval(int argc, char **argv)
{
    struct eval_cfg c = {.rewards = "accuracy", .n = 1, .max_tokens = 256, .temperature = 0.6f,
                         .top_p = 0.95f, .threshold = 1.0f, .slots = 64};
    const struct r1_option opts[] = {
        {R1_OPT_STRING, "model", 0, &c.model, "PATH", "a .gguf file or HF model directory"},
        {R1_OPT_STRING, "run", 0, &c.run, "DIR", "run directory (with --stage, instead of --model)"},
        {R1_OPT_STRING, "stage", 0, &c.stage, "NAME", "the stage whose newest checkpoint to use"},
        {R1_OPT_STRING, "data", 0, &c.data, "FILE", "JSONL: {\"prompt\": ..., \"answer\": ...} per line"},
        {R1_OPT_STRING, "reward", 0, &c.rewards, "NAMES", "rewards summed, comma-separated (default accuracy)"},
        {R1_OPT_STRING, "judge", 0, &c.judge, "PATH", "the judge model of --reward judge (.gguf or HF dir)"},
        {R1_OPT_FLOAT, "threshold", 0, &c.threshold, "X", "a sample passes with reward >= X (default 1)"},
        {R1_OPT_INT, "n", 'n', &c.n, "N", "samples per prompt (default 1)"},
        {R1_OPT_FLOAT, "temperature", 0, &c.temperature, "T", "sampling temperature; 0 = greedy (default 0.6)"},
        {R1_OPT_FLOAT, "top-p", 0, &c.top_p, "P", "nucleus sampling mass (default 0.95)"},
        {R1_OPT_INT, "max-tokens", 0, &c.max_tokens, "M", "new tokens per sample (default 256)"},
        {R1_OPT_U64, "seed", 0, &c.seed, "S", "sampling seed (default 0)"},
        {R1_OPT_FLAG, "chat", 0, &c.chat, NULL, "render each prompt as a user turn with the model's chat template"},
        {R1_OPT_STRING, "template", 0, &c.template_, "NAME", "chat template to use (implies --chat)"},
        {R1_OPT_STRING, "prompt-template", 0, &c.prompt_template, "T", "prompt template: none, r1-zero or text with {prompt}"},
        {R1_OPT_STRING, "out", 0, &c.out, "FILE", "write one JSON object per item to FILE"},
        {R1_OPT_FLAG, "json", 0, &c.json, NULL, "write the items to stdout (the summary goes to stderr)"},
        {R1_OPT_INT, "threads", 0, &c.threads, "N", "CPU threads (default: all)"},
        {R1_OPT_INT, "slots", 0, &c.slots, "S", "sequences decoded together (default 64)"},
        {R1_OPT_STRING, "dtype", 0, &c.dtype_name, "T", "generation weights: f32 (default) or bf16 (faster decoding)"},
        {R1_OPT_END, NULL, 0, NULL, NULL, NULL},
    };
    const char *pos[1];
    int npos = 0;
    int rc = r1_opt_parse("eval", "(--model PATH | --run DIR --stage NAME) --data FILE [options]",
                          "Samples N completions of every prompt, scores them with the named\n"
                          "rewards and prints pass@1 (mean share of samples with reward >=\n"
                          "threshold) and maj@N (share of items whose most common answer is\n"
                          "correct): 'eval: 40 items, n=4: pass@1 0.612, maj@4 0.700'.",
                          opts, argc, argv, pos, 0, &npos);
    if (rc)
        return rc == R1_OPT_HELP ? 0 : rc;
    bool by_model = c.model && !c.run && !c.stage, by_run = !c.model && c.run && c.stage;
    if (!c.data || !(by_model || by_run)) {
        fprintf(stderr, "r1 eval: needs --data FILE and either --model PATH or --run DIR "
                        "--stage NAME (see 'r1 eval --help')\n");
        return 2;
    }
    if (c.n < 1 || c.max_tokens < 1 || c.slots < 1) {
        fprintf(stderr, "r1 eval: -n, --max-tokens and --slots must be at least 1\n");
        return 2;
    }
    if (c.out && c.json) {
        fprintf(stderr, "r1 eval: give --out FILE or --json, not both\n");
        return 2;
    }
    struct r1_sampling sp = {c.temperature, 0, c.top_p, 0};
    if ((rc = r1_sampling_check(&sp)) || (rc = cmd_gen_dtype(c.dtype_name, &c.dtype)) ||
        (rc = run_eval(&c)))
        return cmd_fail("eval", rc);
    return 0;
}
