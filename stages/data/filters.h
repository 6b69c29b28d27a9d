/* filters.h - the quality filters of rejection sampling (stages/rejection_sft.c): pure
 * functions that decide whether one sampled completion joins the dataset, and why not.
 *
 * A completion is checked against the reasons below in this order, and the first one
 * that fails is the reason it is rejected (each rejection counts once, so the counts of
 * all reasons plus the kept completions add up to the samples):
 *
 *   1. truncated   generation hit max_completion_len (no end-of-text): never kept
 *   2. too_short   fewer than min_tokens completion tokens
 *   3. too_long    more than max_tokens completion tokens (max_tokens 0: no bound)
 *   4. format      require_format and the strict format reward is below 1
 *                  (<think>\n…\n</think>\n<answer>\n…\n</answer>)
 *   5. reward      the weighted reward sum is below min_reward (correctness)
 *   6. language    min_language > 0 and the share of the completion's words written in
 *                  `language` is below it (r1_filter_language_share)
 *   7. code_block  no_code_blocks and the completion holds a ``` fence
 *   8. paragraph   max_paragraph_chars > 0 and a paragraph is longer than that
 *   9. duplicate   an exact copy of a completion already kept for the prompt, or (with
 *                  dedup_threshold > 0) word-trigram Jaccard similarity >= the threshold
 *                  with one of them
 *  10. quota       keep_per_prompt completions are already kept for the prompt
 *
 * Why this order: cheap structural checks first (a truncated or malformed completion has
 * no answer to judge); then correctness, so `rejected/reward` reads as "the source was
 * wrong"; then readability, so its counts are the correct completions lost to style
 * (what a recipe can loosen); the set-level checks, which depend on what was kept
 * before, come last.  Lengths are in tokens of the completion without its end-of-text
 * token; characters are Unicode code points (an invalid UTF-8 byte counts as one). */
#ifndef R1_STAGES_FILTERS_H
#define R1_STAGES_FILTERS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

enum r1_reject {
    R1_REJECT_NONE = 0, /* kept */
    R1_REJECT_TRUNCATED,
    R1_REJECT_TOO_SHORT,
    R1_REJECT_TOO_LONG,
    R1_REJECT_FORMAT,
    R1_REJECT_REWARD,
    R1_REJECT_LANGUAGE,
    R1_REJECT_CODE_BLOCK,
    R1_REJECT_PARAGRAPH,
    R1_REJECT_DUPLICATE,
    R1_REJECT_QUOTA,
    R1_REJECT_N
};

/* The stable name of a reason ("truncated", "too_short", ... ; "kept" for NONE): metrics
 * are "rejected/<name>", and checkpoints store counts under these names. */
const char *r1_reject_name(enum r1_reject r);

/* The filter settings (from struct r1_rejection_cfg). */
struct r1_filter_cfg {
    float min_reward;
    bool require_format;
    const char *language; /* code for min_language ("en", "zh", ...) */
    float min_language;   /* 0: off */
    int64_t min_tokens, max_tokens; /* max 0: no bound */
    bool no_code_blocks;
    int64_t max_paragraph_chars; /* 0: off */
    float dedup_threshold;       /* 0: exact copies only */
    int64_t keep_per_prompt;
};

/* One sampled completion. */
struct r1_filter_sample {
    const char *prompt;     /* the prompt as the model saw it (the format reward reads it
                             * when the template pre-fills "<think>") */
    const char *completion; /* the text, end-of-text token removed (valid UTF-8) */
    int n_tokens;           /* completion tokens without the end-of-text token */
    bool truncated;         /* generation stopped at the length limit */
    double reward;          /* the weighted reward sum */
};

/* The completions already kept for the same prompt (in the order they were kept). */
struct r1_filter_kept {
    const char *const *texts;
    int n;
};

/* The first failing reason, or R1_REJECT_NONE when the sample is kept. */
enum r1_reject r1_filter_check(const struct r1_filter_cfg *cfg, const struct r1_filter_sample *s,
                               const struct r1_filter_kept *kept);

/* ---- the individual checks (exposed for tests and reuse) ---------------------------- */

/* Share of the words of the whole text (the thinking, the answer and anything around
 * them; the four tags themselves are not words) written in `language`, as the language
 * reward counts words; 0 for a text without words or an unknown language. */
double r1_filter_language_share(const char *text, const char *language);
/* True when text holds a ``` code fence anywhere. */
bool r1_filter_has_code_block(const char *text);
/* Characters of the longest paragraph: text between blank lines (lines of only spaces,
 * tabs or \r), its inner newlines counted, its outer whitespace not. */
int64_t r1_filter_longest_paragraph(const char *text);
/* Jaccard similarity of the sets of word trigrams of a and b (words: maximal runs of
 * non-whitespace bytes); a text of 1 or 2 words is one shingle of those words; two texts
 * without words are 1.0 alike, one without words and one with are 0. */
double r1_filter_similarity(const char *a, const char *b);

#endif
