/* format.c - the format rewards: strict and soft <think>/<answer> layouts, and tag counts.
 * All read the effective completion (a pre-filled <think> put back in front). */
#include "stages/rewards/rewards.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

static bool is_space(char c)
{
    return c == ' ' || c == '\t' || c == '\n' || c == '\r' || c == '\v' || c == '\f';
}

static bool only_space(const char *s, size_t from, size_t to)
{
    for (size_t i = from; i < to; i++)
        if (!is_space(s[i]))
            return false;
    return true;
}

static bool at(const char *s, size_t pos, const char *lit)
{
    return strncmp(s + pos, lit, strlen(lit)) == 0;
}

/* The effective completion with each tag present exactly once, and where each is;
 * NULL otherwise (free the result). */
static char *one_of_each(const struct r1_reward_input *in, size_t first[R1_TAG_N])
{
    char *s = r1_reward_effective_completion(in);
    if (!s)
        return NULL;
    int count[R1_TAG_N];
    r1_reward_count_tags(s, strlen(s), count, first);
    for (int t = 0; t < R1_TAG_N; t++) {
        if (count[t] != 1) {
            free(s);
            return NULL;
        }
    }
    return s;
}

/* ^\s*<think>\n.*\n</think>\n<answer>\n.*\n</answer>\s*$ with one of each tag. */
double r1_reward_format(const struct r1_reward_input *in, const struct r1_reward_cfg *cfg)
{
    (void)cfg;
    size_t f[R1_TAG_N];
    char *s = one_of_each(in, f);
    if (!s)
        return 0.0;
    size_t lead = 0;
    while (is_space(s[lead]))
        lead++;
    size_t think_body = f[R1_TAG_THINK] + 8;   /* after "<think>\n" */
    size_t answer_body = f[R1_TAG_ANSWER] + 9; /* after "<answer>\n" */
    bool ok =
        f[R1_TAG_THINK] == lead && at(s, lead, "<think>\n") && f[R1_TAG_THINK_END] > think_body &&
        s[f[R1_TAG_THINK_END] - 1] == '\n' && at(s, f[R1_TAG_THINK_END], "</think>\n<answer>\n") &&
        f[R1_TAG_ANSWER] == f[R1_TAG_THINK_END] + 9 && f[R1_TAG_ANSWER_END] > answer_body &&
        s[f[R1_TAG_ANSWER_END] - 1] == '\n' && only_space(s, f[R1_TAG_ANSWER_END] + 9, strlen(s));
    free(s);
    return ok ? 1.0 : 0.0;
}

/* ^\s*<think>.*</think>\s*<answer>.*</answer> with one of each tag; anything after. */
double r1_reward_format_soft(const struct r1_reward_input *in, const struct r1_reward_cfg *cfg)
{
    (void)cfg;
    size_t f[R1_TAG_N];
    char *s = one_of_each(in, f);
    if (!s)
        return 0.0;
    size_t lead = 0;
    while (is_space(s[lead]))
        lead++;
    bool ok = f[R1_TAG_THINK] == lead && f[R1_TAG_THINK_END] > f[R1_TAG_THINK] &&
              f[R1_TAG_ANSWER] > f[R1_TAG_THINK_END] &&
              only_space(s, f[R1_TAG_THINK_END] + 8, f[R1_TAG_ANSWER]) &&
              f[R1_TAG_ANSWER_END] > f[R1_TAG_ANSWER];
    free(s);
    return ok ? 1.0 : 0.0;
}

double r1_reward_tag_count(const struct r1_reward_input *in, const struct r1_reward_cfg *cfg)
{
    (void)cfg;
    char *s = r1_reward_effective_completion(in);
    if (!s)
        return 0.0;
    int count[R1_TAG_N];
    size_t first[R1_TAG_N];
    r1_reward_count_tags(s, strlen(s), count, first);
    free(s);
    double r = 0.0;
    for (int t = 0; t < R1_TAG_N; t++) {
        if (count[t] > 1)
            return 0.0;
        if (count[t] == 1)
            r += 0.25;
    }
    return r;
}
