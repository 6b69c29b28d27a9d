/* scan.c - the tag structure of a completion, shared by the rewards: tag counts and a
 * walk over its segments (plain text, think content, answer blocks).
 *
 * Tags are matched byte for byte.  The walk finds each '<' with memchr over an explicit
 * length and looks at it once, so a whole walk is linear in the text (no str* calls on
 * the rest of the text per step: their cost, or a sanitizer's, could be linear each). */
#include "stages/rewards/rewards.h"

#include <stdint.h>
#include <string.h>

static const char *const tag_text[R1_TAG_N] = {"<think>", "</think>", "<answer>", "</answer>"};
static const size_t tag_len[R1_TAG_N] = {7, 8, 8, 9};

/* The tag at s[i] (i < n), or -1. */
static int tag_at(const char *s, size_t n, size_t i)
{
    if (s[i] != '<')
        return -1;
    for (int t = 0; t < R1_TAG_N; t++)
        if (n - i >= tag_len[t] && memcmp(s + i, tag_text[t], tag_len[t]) == 0)
            return t;
    return -1;
}

/* The first tag among `want` (a bit mask of tags) at or after s[from]; its offset in *at
 * (n when none). */
static int next_tag(const char *s, size_t n, size_t from, unsigned want, size_t *at)
{
    while (from < n) {
        const char *p = memchr(s + from, '<', n - from);
        if (!p)
            break;
        size_t i = (size_t)(p - s);
        int t = tag_at(s, n, i);
        if (t >= 0 && (want & (1u << t))) {
            *at = i;
            return t;
        }
        from = i + 1;
    }
    *at = n;
    return -1;
}

void r1_reward_count_tags(const char *s, size_t n, int count[R1_TAG_N], size_t first[R1_TAG_N])
{
    for (int t = 0; t < R1_TAG_N; t++) {
        count[t] = 0;
        first[t] = SIZE_MAX;
    }
    if (!s)
        return;
    size_t at;
    for (size_t from = 0;; from = at + 1) {
        int t = next_tag(s, n, from, (1u << R1_TAG_N) - 1, &at);
        if (t < 0)
            return;
        if (count[t] == 0)
            first[t] = at;
        if (count[t] < INT32_MAX)
            count[t]++;
    }
}

bool r1_reward_next_seg(const char *s, size_t n, size_t *pos, struct r1_reward_seg *seg)
{
    if (!s || *pos >= n)
        return false;
    size_t at;
    int t = next_tag(s, n, *pos, (1u << R1_TAG_THINK) | (1u << R1_TAG_ANSWER), &at);
    if (at > *pos) { /* plain text up to the next opening tag or the end */
        *seg = (struct r1_reward_seg){R1_SEG_TEXT, *pos, at};
        *pos = at;
        return true;
    }
    size_t body = at + tag_len[t], close;
    int want = t + 1; /* the matching closing tag */
    bool closed = next_tag(s, n, body, 1u << want, &close) == want;
    seg->begin = body;
    seg->end = close;
    if (t == R1_TAG_THINK)
        seg->kind = R1_SEG_THINK;
    else
        seg->kind = closed ? R1_SEG_ANSWER : R1_SEG_ANSWER_OPEN;
    *pos = closed ? close + tag_len[want] : n;
    return true;
}
