/* rewards.c - the reward table, lookup by name, and the effective completion (the
 * completion with a template's pre-filled <think> put back in front). */
#include "stages/rewards/rewards.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/err.h"

/* The judge's verdict: the stage computed P(yes) into in->judge (stages/judge.h); 0 when it
 * did not (a list without a judge model). */
static double reward_judge(const struct r1_reward_input *in, const struct r1_reward_cfg *cfg)
{
    double p = in ? in->judge : NAN;
    if (!isfinite(p))
        return 0.0;
    if (cfg && cfg->verdict == R1_VERDICT_BINARY)
        return p >= cfg->threshold ? 1.0 : 0.0;
    return p < 0 ? 0 : p > 1 ? 1 : p;
}

static const struct r1_reward_def reward_table[] = {
    {"accuracy", r1_reward_accuracy,
     "1 when the final answer (outside <think>) equals the reference, else 0; [0, 1]"},
    {"format", r1_reward_format,
     "1 for exactly <think>\\n...\\n</think>\\n<answer>\\n...\\n</answer>, else 0; [0, 1]"},
    {"format_soft", r1_reward_format_soft,
     "1 for one <think>...</think> then one <answer>...</answer>, else 0; [0, 1]"},
    {"tag_count", r1_reward_tag_count,
     "0.25 per tag present exactly once, 0 if any repeats; [0, 1]"},
    {"language", r1_reward_language,
     "share of the thinking's words written in the target language's script; [0, 1]"},
    {"countdown", r1_reward_countdown,
     "1 when the last <answer> equation uses the numbers once and hits the target, 0.1 when "
     "wrong, 0 without one; {0, 0.1, 1}"},
    {"length_cosine", r1_reward_length_cosine,
     "cosine of the length: correct 1 -> 0.5, wrong -1 -> -0.5 as length goes 0 -> limit; "
     "[-1, 1]"},
    {"repetition", r1_reward_repetition,
     "(1 - unique/total n-grams of words) * max_penalty; [max_penalty, 0]"},
    {"code", r1_reward_code,
     "fraction of meta.tests whose stdout the last fenced python/c block reproduces, run "
     "sandboxed; [0, 1]"},
    {"judge", reward_judge,
     "P(yes) of the judge model that reads the question, the reference and the final answer "
     "(verdict binary: 1 when P(yes) >= threshold); [0, 1]"},
};

const struct r1_reward_def *r1_reward_table(int *n)
{
    if (n)
        *n = (int)(sizeof(reward_table) / sizeof(reward_table[0]));
    return reward_table;
}

const struct r1_reward_def *r1_reward_find(const char *name)
{
    if (!name)
        return NULL;
    for (size_t i = 0; i < sizeof(reward_table) / sizeof(reward_table[0]); i++)
        if (strcmp(reward_table[i].name, name) == 0)
            return &reward_table[i];
    return NULL;
}

static bool is_space(char c)
{
    return c == ' ' || c == '\t' || c == '\n' || c == '\r' || c == '\v' || c == '\f';
}

char *r1_reward_effective_completion(const struct r1_reward_input *in)
{
    const char *prompt = in && in->prompt ? in->prompt : "";
    const char *completion = in && in->completion ? in->completion : "";
    size_t plen = strlen(prompt), clen = strlen(completion);
    size_t end = plen;
    while (end > 0 && is_space(prompt[end - 1]))
        end--;
    static const char open[] = "<think>";
    size_t olen = sizeof(open) - 1;
    size_t keep = 0; /* bytes of the prompt's tail that go in front */
    if (end >= olen && memcmp(prompt + end - olen, open, olen) == 0)
        keep = plen - (end - olen);
    char *out = malloc(keep + clen + 1);
    if (!out)
        return NULL;
    memcpy(out, prompt + plen - keep, keep);
    memcpy(out + keep, completion, clen + 1);
    return out;
}

double r1_reward_total(const struct r1_reward_cfg *cfgs, int n, const struct r1_reward_input *in,
                       float *each)
{
    double sum = 0;
    for (int k = 0; k < n; k++) {
        const struct r1_reward_def *d = r1_reward_find(cfgs[k].name);
        double v = d ? d->fn(in, &cfgs[k]) : 0;
        if (!isfinite(v))
            v = 0; /* rewards are total; a NaN here would poison a whole batch */
        if (each)
            each[k] = (float)v;
        sum += cfgs[k].weight * v;
    }
    return sum;
}

int r1_reward_check_list(const struct r1_reward_cfg *cfgs, int n, const char *key)
{
    for (int i = 0; i < n; i++) {
        const struct r1_reward_cfg *c = &cfgs[i];
        if (!r1_reward_find(c->name)) {
            char names[512] = "";
            for (size_t k = 0; k < sizeof(reward_table) / sizeof(reward_table[0]); k++)
                snprintf(names + strlen(names), sizeof(names) - strlen(names), "%s%s",
                         k ? ", " : "", reward_table[k].name);
            return r1_err_set(R1_EINVAL, "%s[%d]: unknown reward '%s'; known: %s", key, i,
                              c->name, names);
        }
        if (strcmp(c->name, "language") == 0 && !r1_reward_language_known(c->language))
            return r1_err_set(R1_EINVAL, "%s[%d].language '%s' is not a known language code "
                              "(en, zh, ja, ko, ru, ar, ...)", key, i, c->language);
        if (strcmp(c->name, "judge") == 0 && r1_reward_find_judge(cfgs, i))
            return r1_err_set(R1_EINVAL, "%s[%d]: a second judge reward; a list reads one "
                              "judge", key, i);
    }
    return 0;
}

const struct r1_reward_cfg *r1_reward_find_judge(const struct r1_reward_cfg *cfgs, int n)
{
    for (int i = 0; i < n; i++)
        if (cfgs[i].name && strcmp(cfgs[i].name, "judge") == 0)
            return &cfgs[i];
    return NULL;
}
